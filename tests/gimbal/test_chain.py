"""The whole chain: determinism, resume, any skeleton, accuracy against triangulation."""

import numpy as np
import pytest

from mck.geometry import triangulate
from mck.geometry.camera import rotation_to_rvec
from mck.gimbal import fit_params, prepare_chain, run_chain, smooth
from mck.gimbal.prepare import interpolate_positions
from tests.gimbal.synthetic import make_problem, mouse_poses
from tests.gimbal.test_conditionals import tiny_params


def random_tree_params(K, S_, C, seed=0):
    rng = np.random.default_rng(seed)
    parents = np.r_[0, [rng.integers(0, k) for k in range(1, K)]]
    p = tiny_params(K=K, S_=S_, C=C, seed=seed)
    p["parents"] = parents
    return p


def random_cameras(C, seed=0):
    rng = np.random.default_rng(seed)
    Ps = []
    for c in range(C):
        a = 2 * np.pi * c / C
        center = 600 * np.array([np.cos(a), np.sin(a), 0.3])
        z = -center / np.linalg.norm(center)
        x = np.cross([0, 0, 1.0], z)
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
        K = np.array([[800.0, 0, 320], [0, 800, 256], [0, 0, 1]]) * [[1 + rng.uniform(-.05, .05)], [1], [1]]
        Ps.append(K @ np.c_[R, -R @ center])
    return np.stack(Ps)


def skeleton_observations(params, P, N, seed=0):
    rng = np.random.default_rng(seed)
    K = len(params["parents"])
    x = np.zeros((N, K, 3))
    drift = np.cumsum(rng.normal(scale=1.0, size=(N, 3)), axis=0)
    for k in range(1, K):
        x[:, k] = x[:, params["parents"][k]] + params["radii"][k] * params["mus"][0, k]
    x += drift[:, None]
    h = np.einsum("cij,nkj->ncki", P[:, :, :3], x) + P[None, :, None, :, 3]
    return x, h[..., :2] / h[..., 2:] + rng.normal(scale=1.5, size=(N, len(P), K, 2))


def test_any_skeleton_cameras_and_states_run():
    """A rat-like problem: 18 keypoints, 4 cameras, 9 states — nothing assumes the mouse."""
    params = random_tree_params(K=18, S_=9, C=4)
    P = random_cameras(4)
    x, uv = skeleton_observations(params, P, N=30)
    result = smooth(uv, None, P, params, n_iters=40, burn_in=20, thin=2, init_positions=x, seed=3)
    assert result.positions.shape == (30, 18, 3) and result.log_likelihood.shape == (40,)
    assert np.all(np.isfinite(result.positions)) and result.samples == 9   # i > 20 and i % 2 == 0: 22 … 38


def test_same_seed_same_samples_and_resume_is_exact():
    params = random_tree_params(K=6, S_=4, C=3, seed=1)
    P = random_cameras(3, seed=1)
    x, uv = skeleton_observations(params, P, N=25, seed=1)
    uv[3, 1, 2] = np.nan
    kw = dict(n_iters=30, burn_in=10, thin=2, init_positions=x, seed=5, state_block_frames=8)
    a = smooth(uv, None, P, params, **kw)
    b = smooth(uv, None, P, params, **kw)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.log_likelihood, b.log_likelihood)
    # Stop after 12 iterations, resume from the state: identical to the uninterrupted run.
    model, data, state, options = prepare_chain(uv, None, P, params, **kw)
    stopped = {}

    def stop_at_12(state, iteration, trace):
        stopped.update(state=state, iteration=iteration, trace=trace)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_chain(model, data, state, 30, seed=5, options=options, chunk_iters=12, callback=stop_at_12)
    resumed = run_chain(model, data, stopped["state"], 30, seed=5, options=options, start=stopped["iteration"],
                        trace=stopped["trace"], chunk_iters=7)
    assert np.array_equal(resumed.positions, a.positions)
    assert np.array_equal(resumed.log_likelihood, a.log_likelihood)
    c = smooth(uv, None, P, params, **{**kw, "seed": 6})
    assert not np.array_equal(c.positions, a.positions)


def test_per_frame_decisions_keep_moving_where_one_joint_decision_stalls():
    """The "frames" update makes one Metropolis decision per frame, so its acceptance does not fall with the length
    of the session; the lab's single decision over all N·K·3 coordinates does (and a chain that never accepts
    silently returns its initialisation)."""
    params = random_tree_params(K=6, S_=4, C=3, seed=1)
    P = random_cameras(3, seed=1)
    x, uv = skeleton_observations(params, P, N=1000, seed=1)
    kw = dict(n_iters=20, burn_in=10, thin=1, init_positions=x, seed=0, step_size=0.5)
    frames = smooth(uv, None, P, params, **kw)
    joint = smooth(uv, None, P, params, position_update="joint", **kw)
    assert frames.acceptance_rate > 0.4            # figures: docs/algorithms.md, Measured figures
    assert joint.acceptance_rate < 0.5 * frames.acceptance_rate
    assert np.all(np.isfinite(frames.positions)) and not np.allclose(frames.positions, x)
    with pytest.raises(ValueError, match="position_update"):
        prepare_chain(uv, None, P, params, position_update="sideways")


@pytest.mark.slow
def test_gimbal_beats_robust_triangulation_on_the_synthetic_rig():
    """Detector-like noise (2 px), 10 % outlier views with low-ish confidence, 5 % missing views."""
    train = mouse_poses(3000, seed=7) + np.random.default_rng(0).normal(scale=1.0, size=(3000, 14, 3))
    params = fit_params(train, np.array([0, 0, 0, 2, 3, 3, 3, 6, 3, 3, 0, 10, 0, 12]), num_cameras=6,
                        num_states=10, num_iters=200)
    params["obs_inlier_variance"] = np.full((6, 14), 4.0)
    pb = make_problem(200, seed=0)
    # Robust triangulation on the same undistorted observations: cameras back from P = K[R|t], no distortion.
    ext, intr = [], []
    for P in pb.camera_matrices:
        Kc, R = _rq(P[:, :3])
        t = np.linalg.solve(Kc, P[:, 3])
        ext.append(np.r_[rotation_to_rvec(R), t])
        intr.append((Kc, np.zeros(5)))
    conf_uv = np.where((pb.conf < 0.25)[..., None], np.nan, pb.uv)
    tri = triangulate(conf_uv, np.stack(ext), intr, conf=pb.conf)
    result = smooth(pb.uv, pb.conf, pb.camera_matrices, params, n_iters=400, seed=0,
                    init_positions=interpolate_positions(tri))
    tri_err = np.linalg.norm(tri - pb.positions, axis=-1)
    gim_err = np.linalg.norm(result.positions - pb.positions, axis=-1)
    # figures: docs/algorithms.md, Measured figures.
    assert np.median(gim_err) < np.nanmedian(tri_err)
    assert np.mean(gim_err) < np.nanmean(tri_err)


def _rq(A):
    """A = K R with K upper-triangular (positive diagonal), R a rotation."""
    Q, U = np.linalg.qr(np.flipud(A).T)
    K = np.flipud(np.fliplr(U.T))
    R = np.flipud(Q.T)
    signs = np.diag(np.sign(np.diag(K)))
    K, R = K @ signs, signs @ R
    if np.linalg.det(R) < 0:
        R = -R
        K = -K
    return K / K[2, 2], R
