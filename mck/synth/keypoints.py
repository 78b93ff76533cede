"""Keypoints-only synthetic sessions: ground-truth 3D poses and the six cameras' 2D detections (detector-like
noise, outlier views with low-ish confidence, missing views) without rendering any video — seconds for a two-hour
session (216,000 frames), for benchmarks and numerical checks of GIMBAL and triangulation.

Two animals: ``mouse`` (the synthetic mouse, 14 GIMBAL nodes) and ``rat`` (Rat7M-like: the same motion scaled to
a rat's size, 18 nodes — the mouse's 14 plus four leaf markers). Positions in node order, mm, world frame;
``uv`` undistorted px (the pinhole cameras P = K·[R|t] of :func:`mck.synth.rig.make_rig`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mck.geometry import projection_matrices
from mck.skeleton import MOUSE
from mck.synth.animal import make_body, trajectory
from mck.synth.rig import FLOOR_Z, make_rig

ANIMALS = ("mouse", "rat")
#: Rat7M-like: body scale against the mouse, and the (node, parent-offset fraction) of the four extra leaf markers.
RAT_SCALE = 1.8
RAT_MARKERS = ((1, 0.45), (3, 0.5), (7, 0.4), (11, 0.5))


@dataclass
class KeypointSession:
    """``positions`` (N, K, 3) true, node order, mm · ``uv`` (N, C, K, 2) undistorted px, NaN = missing ·
    ``conf`` (N, C, K) · ``is_outlier`` (N, C, K) bool · ``camera_matrices`` (C, 3, 4) · ``parents`` (K,)."""

    positions: np.ndarray
    uv: np.ndarray
    conf: np.ndarray
    is_outlier: np.ndarray
    camera_matrices: np.ndarray
    parents: np.ndarray


def _fast_trajectory(frames: int, rng: np.random.Generator, period: int = 9000) -> dict[str, np.ndarray]:
    """:func:`trajectory` for long sessions: segments of ``period`` frames (each integrated by the ordinary
    per-frame loop), joined end to end by shifting each segment's start to the previous one's end."""
    if frames <= period:
        return trajectory(frames, rng)
    parts = [trajectory(min(period, frames - s), rng) for s in range(0, frames, period)]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in ("pos", "phase")}
    # Positions stay inside the arena in every segment; the joins are small jumps, harmless for benchmarks.
    out["pos"] = np.concatenate([p["pos"] for p in parts])
    phase, offset = [], 0.0
    for p in parts:
        phase.append(p["phase"] + offset)
        offset = phase[-1][-1]
    out["phase"] = np.concatenate(phase)
    return out


def animal_poses(frames: int, seed: int = 0, animal: str = "mouse") -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth poses (frames, K, 3) mm in node order and their ``parents`` (K,)."""
    if animal not in ANIMALS:
        raise ValueError(f"animal={animal!r}: expected one of {', '.join(ANIMALS)}")
    body = make_body(_fast_trajectory(frames, np.random.default_rng(seed)))
    x = body.keypoints[:, MOUSE.node_order + 1]
    parents = np.asarray(MOUSE.parents)
    if animal == "rat":
        root = x[:, :1].copy()
        x = root + RAT_SCALE * (x - root)
        x[..., 2] = np.minimum(x[..., 2], FLOOR_Z)                        # paws stay on (not under) the floor
        extra = [x[:, k] + frac * (x[:, k] - x[:, parents[k]]) for k, frac in RAT_MARKERS]
        x = np.concatenate([x, np.stack(extra, axis=1)], axis=1)
        parents = np.r_[parents, [k for k, _ in RAT_MARKERS]]
    return x, parents


def keypoint_session(frames: int = 200, seed: int = 0, animal: str = "mouse", noise_px: float = 2.0,
                     outlier_fraction: float = 0.1, missing_fraction: float = 0.05,
                     dtype=np.float64) -> KeypointSession:
    """A session of ``frames`` frames on the synthetic rig: 2D detections with ``noise_px`` Gaussian noise,
    ``outlier_fraction`` of the views displaced by N(0, 60 px) (confidence U(0.05, 0.6), inliers U(0.5, 1)) and
    ``missing_fraction`` of the views missing. ``dtype`` of the big arrays (float32 halves a long session)."""
    rng = np.random.default_rng(seed + 1000)
    rig = make_rig()
    P = projection_matrices(rig.extrinsics, [(K, np.zeros(5)) for K in rig.Ks])
    x, parents = animal_poses(frames, seed, animal)
    h = np.einsum("cij,nkj->ncki", P[:, :, :3], x) + P[None, :, None, :, 3]
    uv = (h[..., :2] / h[..., 2:]).astype(dtype)
    uv += rng.normal(scale=noise_px, size=uv.shape).astype(dtype)
    is_outlier = rng.uniform(size=uv.shape[:3]) < outlier_fraction
    uv[is_outlier] += rng.normal(scale=60.0, size=(is_outlier.sum(), 2)).astype(dtype)
    conf = np.where(is_outlier, rng.uniform(0.05, 0.6, size=is_outlier.shape),
                    rng.uniform(0.5, 1.0, is_outlier.shape)).astype(dtype)
    missing = rng.uniform(size=uv.shape[:3]) < missing_fraction
    uv[missing] = np.nan
    return KeypointSession(positions=x, uv=uv, conf=conf, is_outlier=is_outlier, camera_matrices=P, parents=parents)


def gimbal_params(positions: np.ndarray, parents: np.ndarray, num_states: int = 50, num_iters: int = 100,
                  train_frames: int = 3000, seed: int = 0, inlier_variance: float = 4.0, num_cameras: int = 6) -> dict:
    """GIMBAL parameters fitted (:func:`mck.gimbal.fit_params`) to up to ``train_frames`` frames of ``positions``
    plus 1 mm of noise, with ``inlier_variance`` px² for every camera and keypoint."""
    from mck.gimbal import fit_params

    train = positions[: train_frames]
    train = train + np.random.default_rng(seed).normal(scale=1.0, size=train.shape)
    params = fit_params(train, parents, num_cameras=num_cameras, num_states=num_states, num_iters=num_iters)
    params["obs_inlier_variance"] = np.full((num_cameras, positions.shape[1]), float(inlier_variance))
    return params
