"""Calibration refinement on keypoints (mck.calibration.refine): a perturbed rig refined toward the truth from
synthetic animal detections (noise, outliers, missing views), scale and world frame kept."""

from __future__ import annotations

import numpy as np
import pytest

from mck.calibration import refine_extrinsics
from mck.calibration.refine import sample_points
from mck.geometry import rodrigues
from mck.synth.detections import make_detections, perturb_extrinsics


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    R, Q = rodrigues(a[:, :3]), rodrigues(b[:, :3])
    cos = (np.trace(R @ np.swapaxes(Q, 1, 2), axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _centres(e: np.ndarray) -> np.ndarray:
    return -np.einsum("cji,cj->ci", rodrigues(e[:, :3]), e[:, 3:])


@pytest.fixture(scope="module")
def detections():
    return make_detections(frames=500, seed=3)


def test_refine_recovers_perturbed_rig(detections):
    rig = detections.rig
    start = perturb_extrinsics(rig.extrinsics, seed=5, big_camera=2)
    ext, intr, info = refine_extrinsics(detections.uv, start, rig.intrinsics, detections.conf, n_points=2500)
    assert np.allclose(ext[0], rig.extrinsics[0])
    assert _angles(ext, rig.extrinsics).max() < 0.3                      # from up to 10°
    assert np.linalg.norm(_centres(ext) - _centres(rig.extrinsics), axis=1).max() < 4.0    # mm, from 5–10 mm
    _, _, truth = refine_extrinsics(detections.uv, rig.extrinsics, rig.intrinsics, detections.conf, n_points=500,
                                    f_scales=(3.0,), max_nfev=1)
    assert info["before"]["median_px"] > 5 * truth["before"]["median_px"]
    assert info["after"]["median_px"] < 1.1 * truth["before"]["median_px"]
    assert info["iterations"] > 0 and info["points_used"] > 1000
    assert all(isinstance(intr[c][0], np.ndarray) for c in range(len(intr)))


def test_refine_from_a_poor_start(detections):
    """All cameras 5–8° off: median reprojection error of 100+ px, no board."""
    rig = detections.rig
    start = perturb_extrinsics(rig.extrinsics, seed=11, degrees=(5.0, 8.0), mm=(5.0, 10.0))
    ext, _, info = refine_extrinsics(detections.uv, start, rig.intrinsics, detections.conf, n_points=2000,
                                     polish_points=0)
    assert info["before"]["median_px"] > 40
    assert _angles(ext, rig.extrinsics).max() < 0.5
    assert info["after"]["median_px"] < 2.5


@pytest.mark.slow
def test_refine_intrinsics_and_scale(detections):
    rig = detections.rig
    start = perturb_extrinsics(rig.extrinsics, seed=2, degrees=(1.0, 2.0))
    intr0 = [(K.copy(), d.copy()) for K, d in rig.intrinsics]
    intr0[3][0][0, 0] *= 1.02
    intr0[3][0][1, 1] *= 1.02
    ext, intr, info = refine_extrinsics(detections.uv, start, intr0, detections.conf, refine_intrinsics=True,
                                        n_points=800, f_scales=(8.0, 3.0), max_nfev=20)
    assert abs(intr[3][0][0, 0] / rig.Ks[3][0, 0] - 1) < 0.05          # focal ~ depth: weakly constrained
    spread = lambda e: np.linalg.norm(_centres(e) - _centres(e).mean(0), axis=1).mean()   # noqa: E731
    assert spread(ext) == pytest.approx(spread(start), rel=1e-6)
    assert info["after"]["median_px"] < 2.0


def test_sampling_balances_pairs_and_cells():
    rng = np.random.default_rng(0)
    N, C = 20000, 3
    uv = rng.uniform(0, 100, (N, C, 2))
    valid = np.zeros((N, C), bool)
    valid[:, :2] = True                       # pair (0, 1) everywhere
    valid[:200, 2] = True                     # camera 2 rarely seen
    uv[:18000, 0] = rng.uniform(0, 10, (18000, 2))    # camera 0 mostly in one corner
    idx = sample_points(uv, valid, 1000)
    assert len(idx) == 1000 and len(np.unique(idx)) == 1000
    assert valid[idx, 2].sum() > 50           # 1 % of candidates, far more of the sample
    assert (uv[idx, 0, 0] > 10).mean() > 0.3  # the rest of camera 0's image area is represented
