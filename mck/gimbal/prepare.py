"""Inputs for GIMBAL from detections and triangulations (docs/algorithms.md §C.7). Pure numpy."""

from __future__ import annotations

import numpy as np


def outlier_probability(conf, center: float = 0.5, gain: float = 20.0, low: float = 1e-6,
                        high: float = 1 - 1e-6) -> np.ndarray:
    """ρ = clip(sigmoid(gain · (center − conf)), low, high), elementwise; NaN confidences give ``high``.

    The pipeline's values: conf 0.25 → 0.993, 0.5 → 0.5, 0.75 → 0.0067, 1.0 → 4.5e-5.
    """
    conf = np.asarray(conf, dtype=float)
    with np.errstate(over="ignore"):
        rho = 1.0 / (1.0 + np.exp(-gain * (center - conf)))
    return np.where(np.isfinite(conf), np.clip(rho, low, high), high)


def interpolate_positions(positions) -> np.ndarray:
    """Fill NaN frames of (N, K, 3) by linear interpolation over the frame index, per keypoint and axis
    (constant at the ends, like ``np.interp``). Raises ValueError naming the keypoints never observed."""
    x = np.array(positions, dtype=float, copy=True)
    finite = np.isfinite(x).all(-1)                                         # (N, K)
    never = np.flatnonzero(~finite.any(0))
    if never.size:
        raise ValueError(f"keypoints {never.tolist()} (node order) are never triangulated; GIMBAL cannot "
                         "initialise them")
    frames = np.arange(x.shape[0])
    for k in np.flatnonzero(~finite.all(0)):                                # only keypoints with gaps (≤ K loops)
        good = finite[:, k]
        for d in range(3):
            x[:, k, d] = np.interp(frames, frames[good], x[good, k, d])
    return x


def triangulate_dlt(uv, camera_matrices) -> np.ndarray:
    """Least-squares DLT from every observed view. ``uv`` (N, C, K, 2) undistorted px, NaN = missing;
    ``camera_matrices`` (C, 3, 4) → (N, K, 3) mm, NaN where fewer than 2 views."""
    uv = np.asarray(uv, dtype=float)
    P = np.asarray(camera_matrices, dtype=float)
    seen = np.isfinite(uv).all(-1)                                          # (N, C, K)
    u = np.where(seen, uv[..., 0], 0.0)[..., None]
    v = np.where(seen, uv[..., 1], 0.0)[..., None]
    rows_u = u * P[None, :, None, 2] - P[None, :, None, 0]                  # (N, C, K, 4)
    rows_v = v * P[None, :, None, 2] - P[None, :, None, 1]
    rows = np.concatenate([rows_u, rows_v], axis=1) * np.concatenate([seen, seen], axis=1)[..., None]
    rows = np.moveaxis(rows, 2, 1)                                          # (N, K, 2C, 4)
    _, _, vt = np.linalg.svd(rows)
    homogeneous = vt[..., -1, :]
    with np.errstate(all="ignore"):
        points = homogeneous[..., :3] / homogeneous[..., 3:]
    points[seen.sum(1) < 2] = np.nan
    return points
