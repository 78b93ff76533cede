"""QC numbers from arrays. Every function is pure and NaN-aware; results are plain floats/lists for JSON."""

from __future__ import annotations

from typing import Sequence

import warnings

import numpy as np


def _quiet(fn, *args, **kwargs):
    """Call a nan-reduction without "empty slice" warnings (all-NaN → NaN is the intended result)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _nan_quantiles(x: np.ndarray, axis=0, qs=(0.05, 0.5, 0.95)) -> np.ndarray:
    return _quiet(np.nanquantile, x, qs, axis=axis)


def confidence_summary(conf: np.ndarray) -> dict:
    """Confidences ``(frames, cameras, keypoints)`` → median and fraction < 0.25 per camera × keypoint."""
    conf = np.asarray(conf, float)
    q = _nan_quantiles(conf, axis=0, qs=(0.5,))[0]
    low = _quiet(np.nanmean, np.where(np.isnan(conf), np.nan, conf < 0.25), axis=0)
    return {"median": q, "fraction_below_0.25": low}


def displacement_2d(uv: np.ndarray) -> np.ndarray:
    """Frame-to-frame 2D displacement ``(frames-1, cameras, keypoints)`` px from ``uv`` ``(frames, cameras, K, 2)``."""
    uv = np.asarray(uv, float)
    return np.linalg.norm(np.diff(uv, axis=0), axis=-1)


def jump_summary(uv: np.ndarray, jump_px: float = 50.0) -> dict:
    """Per camera × keypoint: median and p99 displacement (px) and the fraction of steps larger than ``jump_px``."""
    d = displacement_2d(uv)
    if d.shape[0] == 0:
        nan = np.full(np.asarray(uv).shape[1:3], np.nan)
        return {"median_px": nan, "p99_px": nan, "jump_fraction": nan, "jump_px": jump_px}
    q = _nan_quantiles(d, axis=0, qs=(0.5, 0.99))
    jumps = _quiet(np.nanmean, np.where(np.isnan(d), np.nan, d > jump_px), axis=0)
    return {"median_px": q[0], "p99_px": q[1], "jump_fraction": jumps, "jump_px": jump_px}


def reprojection_errors(projected: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Distance ``(frames, cameras, keypoints)`` px between reprojected 3D points and the 2D detections."""
    return np.linalg.norm(np.asarray(projected, float) - np.asarray(uv, float), axis=-1)


def bone_lengths(positions: np.ndarray, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Bone lengths ``(frames, edges)`` mm of ``positions`` ``(frames, keypoints, 3)`` for index pairs ``edges``."""
    p = np.asarray(positions, float)
    e = np.asarray(edges, int).reshape(-1, 2)
    return np.linalg.norm(p[:, e[:, 0]] - p[:, e[:, 1]], axis=-1)


def drift(values: np.ndarray, n_windows: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``values`` ``(frames, E)`` in ``n_windows`` consecutive windows → (window centres (n,), (n, E))."""
    values = np.asarray(values, float)
    n = max(1, min(n_windows, values.shape[0]))
    bounds = np.linspace(0, values.shape[0], n + 1).astype(int)
    centres = (bounds[:-1] + bounds[1:]) / 2
    out = np.stack([_nan_quantiles(values[a:b], axis=0, qs=(0.5,))[0] if b > a else np.full(values.shape[1:], np.nan)
                    for a, b in zip(bounds[:-1], bounds[1:])])
    return centres, out


def missing_fraction(values: np.ndarray) -> np.ndarray:
    """Fraction of frames where a keypoint is NaN. ``values`` ``(frames, [cameras,] keypoints, D)`` → ``([C,] K)``."""
    return np.isnan(np.asarray(values, float)).any(axis=-1).mean(axis=0)


def nan_stats(x: np.ndarray) -> dict:
    """Median / p95 / max of the finite values (NaN if none) — the headline numbers for qc.json."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": None, "p95": None, "max": None, "n": 0}
    return {"median": float(np.median(x)), "p95": float(np.quantile(x, 0.95)), "max": float(x.max()), "n": int(x.size)}
