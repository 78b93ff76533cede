"""A synthetic GIMBAL problem on the synthetic rig: mouse poses from mck.synth, pinhole observations with
detector-like noise, outlier views and missing views. Shared by the tests and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mck.geometry import projection_matrices
from mck.skeleton import MOUSE
from mck.synth.animal import make_body, trajectory
from mck.synth.rig import make_rig


@dataclass
class Problem:
    positions: np.ndarray         # (N, K, 3) true, node order, mm
    uv: np.ndarray                # (N, C, K, 2) undistorted px, NaN = missing
    conf: np.ndarray              # (N, C, K)
    is_outlier: np.ndarray        # (N, C, K) bool
    camera_matrices: np.ndarray   # (C, 3, 4)
    parents: np.ndarray           # (K,)


def mouse_poses(frames: int, seed: int) -> np.ndarray:
    """(frames, 14, 3) mm, node order, from the synthetic animal."""
    body = make_body(trajectory(frames, np.random.default_rng(seed)))
    return body.keypoints[:, MOUSE.node_order + 1]


def make_problem(frames: int = 200, seed: int = 0, noise_px: float = 2.0, outlier_fraction: float = 0.1,
                 missing_fraction: float = 0.05) -> Problem:
    rng = np.random.default_rng(seed + 1000)
    rig = make_rig()
    P = projection_matrices(rig.extrinsics, [(K, np.zeros(5)) for K in rig.Ks])
    x = mouse_poses(frames, seed)
    h = np.einsum("cij,nkj->ncki", P[:, :, :3], x) + P[None, :, None, :, 3]
    uv = h[..., :2] / h[..., 2:]
    uv = uv + rng.normal(scale=noise_px, size=uv.shape)
    is_outlier = rng.uniform(size=uv.shape[:3]) < outlier_fraction
    uv[is_outlier] += rng.normal(scale=60.0, size=(is_outlier.sum(), 2))
    conf = np.where(is_outlier, rng.uniform(0.05, 0.6, size=is_outlier.shape), rng.uniform(0.5, 1.0, is_outlier.shape))
    missing = rng.uniform(size=uv.shape[:3]) < missing_fraction
    uv[missing] = np.nan
    return Problem(positions=x, uv=uv, conf=conf, is_outlier=is_outlier, camera_matrices=P, parents=MOUSE.parents)
