"""The fused (XLA) robust triangulation equals the numpy reference."""

import numpy as np
import pytest

from mck.geometry import project, triangulate, triangulate_detailed
from mck.synth.rig import make_rig

RIG = make_rig()


def _data(frames=300, keypoints=18, seed=0):
    rng = np.random.default_rng(seed)
    X = np.stack([rng.uniform(-150, 150, (frames, keypoints)), rng.uniform(-150, 150, (frames, keypoints)),
                  rng.uniform(540, 640, (frames, keypoints))], -1)
    uv = project(X, RIG.extrinsics, RIG.intrinsics) + rng.normal(0, 1.5, (frames, 6, keypoints, 2))
    gross = rng.random(uv.shape[:3]) < 0.1
    uv[gross] += rng.normal(0, 60, (gross.sum(), 2))
    uv[rng.random(uv.shape[:3]) < 0.3] = np.nan            # many points with 0–2 views
    conf = rng.uniform(0.2, 1.0, uv.shape[:3])
    return X, uv, conf


@pytest.mark.parametrize("with_conf", [False, True])
def test_fused_equals_numpy(with_conf):
    _, uv, conf = _data()
    kw = dict(conf=conf if with_conf else None)
    fused = triangulate_detailed(uv, RIG.extrinsics, RIG.intrinsics, chunk=1000, **kw)
    ref = triangulate_detailed(uv, RIG.extrinsics, RIG.intrinsics, engine="numpy", **kw)
    assert np.array_equal(np.isnan(fused.points), np.isnan(ref.points))
    np.testing.assert_allclose(fused.points, ref.points, atol=1e-6)
    assert (fused.views_used != ref.views_used).mean() < 1e-3        # ties in the two-best rule may differ
    assert np.isnan(fused.points).any()                               # the < 2 views case is exercised


def test_fused_float32_moves_reprojections_by_about_a_hundredth_of_a_pixel():
    X, uv, _ = _data(seed=1)
    ref = triangulate(uv, RIG.extrinsics, RIG.intrinsics)
    f32 = triangulate(uv, RIG.extrinsics, RIG.intrinsics, dtype="float32", chunk=512)
    moved = np.linalg.norm(project(f32, RIG.extrinsics, RIG.intrinsics) - project(ref, RIG.extrinsics,
                                                                                   RIG.intrinsics), axis=-1)
    assert np.nanmax(moved) < 0.02
    with pytest.raises(ValueError, match="engine"):
        triangulate(uv, RIG.extrinsics, RIG.intrinsics, engine="gpu-magic")


def test_point_major_and_frame_major_calls_agree():
    from mck.geometry import projection_matrices, robust_fused

    _, uv, conf = _data(frames=40, keypoints=5, seed=2)
    P = projection_matrices(RIG.extrinsics, RIG.intrinsics)
    Ks, dists = np.stack(RIG.Ks), np.stack(RIG.dists)
    frames_X, frames_used = robust_fused.robust(uv, conf, P, Ks, dists, chunk=64)
    flat_X, flat_used = robust_fused.robust(np.moveaxis(uv, 1, 2).reshape(-1, 6, 2),
                                            np.moveaxis(conf, 1, 2).reshape(-1, 6), P, Ks, dists, chunk=64)
    np.testing.assert_allclose(frames_X.reshape(-1, 3), flat_X, atol=1e-9)
    assert np.array_equal(np.moveaxis(frames_used, 1, 2).reshape(-1, 6), flat_used)


def test_threads_and_groups_do_not_change_results():
    """Chunks looped inside one call (``group``), a padded last chunk and several host threads: same arrays."""
    from mck.geometry import projection_matrices, robust_fused

    _, uv, conf = _data(frames=300, seed=3)
    P = projection_matrices(RIG.extrinsics, RIG.intrinsics)
    Ks, dists = np.stack(RIG.Ks), np.stack(RIG.dists)
    ref_X, ref_used = robust_fused.robust(uv, conf, P, Ks, dists, chunk=256, group=1, threads=1)
    for group, threads in ((4, 1), (4, 3), (1, 2)):    # 14 frames a chunk: 5 groups of 4 chunks + 2 chunks
        X, used = robust_fused.robust(uv, conf, P, Ks, dists, chunk=256, group=group, threads=threads)
        np.testing.assert_array_equal(X, ref_X)
        np.testing.assert_array_equal(used, ref_used)


def test_first_call_in_a_fresh_process_solves_in_float64():
    """The cameras go to the device after 64-bit JAX is on: the first call of a process equals the later ones."""
    import subprocess
    import sys

    code = """
import numpy as np
from mck.geometry import project, triangulate
from mck.synth.rig import make_rig
rig = make_rig()
rng = np.random.default_rng(0)
X = np.stack([rng.uniform(-150, 150, (50, 15)), rng.uniform(-150, 150, (50, 15)), rng.uniform(540, 640, (50, 15))], -1)
uv = project(X, rig.extrinsics, rig.intrinsics) + rng.normal(0, 1.0, (50, 6, 15, 2))
first = triangulate(uv, rig.extrinsics, rig.intrinsics)
second = triangulate(uv, rig.extrinsics, rig.intrinsics)
ref = triangulate(uv, rig.extrinsics, rig.intrinsics, engine="numpy")
print(np.abs(first - second).max(), np.abs(first - ref).max())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    first_vs_second, first_vs_numpy = map(float, out)
    assert first_vs_second < 1e-9 and first_vs_numpy < 1e-6
