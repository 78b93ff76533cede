"""Triangulation from C views, vectorized over frames and keypoints.

* ``median_dlt`` — the lab's ``mcc.triangulate`` (docs/algorithms.md §B.1): undistort; two-view DLT (SVD of the 4×4 system) for each
  camera pair, component-wise ``nanmedian`` over the pairs.
* ``robust`` (default) — confidence-weighted least squares with iteratively reweighted, annealed Cauchy weights on
  the reprojection residuals (graduated non-convexity), then reprojection-based view rejection and a final
  weighted solve on the inlier views. Each solve is one batched 3×3 linear system per point, with rows scaled by
  the current depth so residuals are in pixels.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np

from mck.geometry.camera import Intrinsics, project, projection_matrices, undistort_points

METHODS = ("robust", "median_dlt")
#: The robust solver's annealed Cauchy scales (px), one IRLS pass each, and its view-rejection threshold (px).
CAUCHY_SCALES_PX = (64.0, 32.0, 16.0, 8.0, 4.0)
REJECT_PX = 12.0


@dataclass
class Triangulation:
    """Result of ``triangulate_detailed``.

    points : (frames, keypoints, 3) mm, NaN where fewer than 2 usable views.
    reprojection_error : (frames, cameras, keypoints) px in the distorted image, NaN where not observed.
    views_used : (frames, cameras, keypoints) bool, the views the final estimate rests on.
    """

    points: np.ndarray
    reprojection_error: np.ndarray
    views_used: np.ndarray


def triangulate(uv: np.ndarray, extrinsics: np.ndarray, intrinsics: Intrinsics, conf: np.ndarray | None = None,
                method: str = "robust", **options) -> np.ndarray:
    """3D points ``(frames, keypoints, 3)`` mm from ``uv`` ``(frames, cameras, keypoints, 2)`` distorted px.

    ``conf`` ``(frames, cameras, keypoints)`` weights the views (robust method; median_dlt ignores it, as the lab's
    did — threshold beforehand by setting uv to NaN). NaN where fewer than 2 usable views.
    """
    return _solve(uv, extrinsics, intrinsics, conf, method, **options)[0]


def triangulate_detailed(uv: np.ndarray, extrinsics: np.ndarray, intrinsics: Intrinsics,
                         conf: np.ndarray | None = None, method: str = "robust", **options) -> Triangulation:
    """Like ``triangulate``, plus per-view reprojection errors and the views used."""
    points, used = _solve(uv, extrinsics, intrinsics, conf, method, **options)
    errors = reprojection_errors(points, uv, extrinsics, intrinsics)
    return Triangulation(points, errors, used)


def reprojection_errors(points: np.ndarray, uv: np.ndarray, extrinsics: np.ndarray,
                        intrinsics: Intrinsics) -> np.ndarray:
    """Pixel distance ``(frames, cameras, keypoints)`` between observed ``uv`` and the projected ``points``."""
    projected = project(points, extrinsics, intrinsics)
    return np.linalg.norm(projected - np.asarray(uv, dtype=float), axis=-1)


ENGINES = ("fused", "numpy")


def _solve(uv, extrinsics, intrinsics, conf, method, chunk: int = 100_000, engine: str = "fused",
           dtype: str = "float64", **options):
    """``engine="fused"`` runs the robust method as one compiled XLA computation per chunk of points
    (:mod:`mck.geometry.robust_fused`, the same arithmetic ≈ 10–20× faster); ``numpy`` is the reference.
    ``dtype`` (fused only): float32 moves half the bytes; see benchmarks/bench_triangulation.py for its effect."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")
    uv = np.asarray(uv, dtype=float)
    if uv.ndim != 4 or uv.shape[-1] != 2:
        raise ValueError(f"uv: expected shape (frames, cameras, keypoints, 2), got {uv.shape}")
    frames, cams, kps, _ = uv.shape
    if len(intrinsics) != cams or np.asarray(extrinsics).shape != (cams, 6):
        raise ValueError(f"uv has {cams} cameras but extrinsics/intrinsics describe {len(intrinsics)}")
    if method == "robust" and engine == "fused":
        from mck.geometry import robust_fused

        weights = np.ones(uv.shape[:3]) if conf is None else np.asarray(conf, dtype=float)
        Ks = np.stack([np.asarray(K, dtype=float) for K, _ in intrinsics])
        dists = np.stack([(np.asarray(d, dtype=float).ravel().tolist() + [0.0] * 5)[:5] for _, d in intrinsics])
        return robust_fused.robust(uv, weights, projection_matrices(extrinsics, intrinsics), Ks, dists,
                                   dtype=dtype, **options)
    und = np.stack([undistort_points(uv[:, c], K, d) for c, (K, d) in enumerate(intrinsics)], axis=1)
    und = np.moveaxis(und, 1, 2).reshape(frames * kps, cams, 2)          # (N, C, 2)
    if conf is None:
        weights = np.ones(und.shape[:2])
    else:
        weights = np.moveaxis(np.asarray(conf, dtype=float), 1, 2).reshape(frames * kps, cams)
    weights = np.where(np.isfinite(und).all(-1) & np.isfinite(weights), np.clip(weights, 0, None), 0.0)
    P = projection_matrices(extrinsics, intrinsics)
    points = np.full((frames * kps, 3), np.nan)
    used = np.zeros((frames * kps, cams), dtype=bool)
    solver = _robust if method == "robust" else _median_dlt
    for start in range(0, frames * kps, chunk):
        sl = slice(start, start + chunk)
        points[sl], used[sl] = solver(und[sl], weights[sl], P, **options)
    points = points.reshape(frames, kps, 3)
    used = np.moveaxis(used.reshape(frames, kps, cams), 2, 1)
    return points, used


def _median_dlt(und: np.ndarray, weights: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """docs/algorithms.md §B.1: DLT per camera pair (4×4 SVD, as cv2.triangulatePoints), component-wise nanmedian."""
    n, cams, _ = und.shape
    valid = weights > 0
    pairs = list(itertools.combinations(range(cams), 2))
    estimates = np.full((len(pairs), n, 3), np.nan)
    for p, (i, j) in enumerate(pairs):
        both = valid[:, i] & valid[:, j]
        if not both.any():
            continue
        ui, uj = und[both, i], und[both, j]
        A = np.stack([ui[:, :1] * P[i, 2] - P[i, 0], ui[:, 1:] * P[i, 2] - P[i, 1],
                      uj[:, :1] * P[j, 2] - P[j, 0], uj[:, 1:] * P[j, 2] - P[j, 1]], axis=1)
        _, _, vt = np.linalg.svd(A)
        X = vt[:, -1]
        estimates[p, both] = X[:, :3] / X[:, 3:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        points = np.nanmedian(estimates, axis=0)
    used = valid & (valid.sum(1, keepdims=True) >= 2)
    return points, used


def _normal_basis(P: np.ndarray) -> np.ndarray:
    """(4·C, 16): per camera the 4×4 blocks whose combination with (u²+v², u, v, 1) gives the normal matrix of the
    linear triangulation rows (u·p3 − p1, v·p3 − p2) — so one matrix product builds every point's system."""
    p1, p2, p3 = P[:, 0], P[:, 1], P[:, 2]
    outer = lambda a, b: np.einsum("ci,cj->cij", a, b)  # noqa: E731
    blocks = np.stack([outer(p3, p3), -(outer(p3, p1) + outer(p1, p3)), -(outer(p3, p2) + outer(p2, p3)),
                       outer(p1, p1) + outer(p2, p2)], axis=0)           # (4, C, 4, 4)
    return blocks.reshape(4 * P.shape[0], 16)


def cramer3(a, b, c, d, e, f, r0, r1, r2):
    """Solve the symmetric 3×3 system [[a b c] [b d e] [c e f]] X = [r0 r1 r2] elementwise by Cramer's rule;
    returns (x, y, z). Plain arithmetic, so numpy and jax.numpy arrays both work (the fused solver shares it)."""
    c00 = d * f - e * e
    c01 = c * e - b * f
    c02 = b * e - c * d
    c11 = a * f - c * c
    c12 = b * c - a * e
    c22 = a * d - b * b
    inv_det = 1.0 / (a * c00 + b * c01 + c * c02)          # one division, not three
    return ((c00 * r0 + c01 * r1 + c02 * r2) * inv_det, (c01 * r0 + c11 * r1 + c12 * r2) * inv_det,
            (c02 * r0 + c12 * r1 + c22 * r2) * inv_det)


def _solve3(G: np.ndarray) -> np.ndarray:
    """Solve M X = r with M = G[:3, :3], r = −G[:3, 3], batched, closed form (Cramer's rule)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y, z = cramer3(G[:, 0, 0], G[:, 0, 1], G[:, 0, 2], G[:, 1, 1], G[:, 1, 2], G[:, 2, 2],
                          -G[:, 0, 3], -G[:, 1, 3], -G[:, 2, 3])
    return np.stack([x, y, z], axis=-1)


def _weighted_solve(und: np.ndarray, w: np.ndarray, basis: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
    """Weighted least squares X (N, 3) of the linear triangulation rows; weights ``w`` (N, C) / depth²."""
    ww = w if depth is None else w / np.maximum(depth, 1e-6) ** 2
    ww = np.where(np.isfinite(ww), ww, 0.0)
    u = np.nan_to_num(und[..., 0])
    v = np.nan_to_num(und[..., 1])
    features = np.concatenate([ww * (u * u + v * v), ww * u, ww * v, ww], axis=1)     # (N, 4C)
    G = (features @ basis).reshape(-1, 4, 4)
    return _solve3(G)


def _residuals(X: np.ndarray, und: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted-pixel residuals (N, C) and depths (N, C) of points X (N, 3)."""
    with np.errstate(divide="ignore", invalid="ignore"):   # NaN points (fewer than 2 views) stay NaN
        hom = (X @ P[:, :, :3].reshape(-1, 3).T + P[:, :, 3].reshape(-1)).reshape(len(X), P.shape[0], 3)
        depth = hom[..., 2]
        proj = hom[..., :2] / depth[..., None]
    return np.linalg.norm(proj - und, axis=-1), depth


def _robust(und: np.ndarray, weights: np.ndarray, P: np.ndarray, scales=CAUCHY_SCALES_PX,
            reject_px: float = REJECT_PX) -> tuple[np.ndarray, np.ndarray]:
    valid = weights > 0
    enough = valid.sum(1) >= 2
    basis = _normal_basis(P)
    X = _weighted_solve(und, weights, basis, None)
    depth = None
    for scale in scales:                                   # annealed Cauchy IRLS
        res, depth = _residuals(X, und, P)
        robust_w = weights / (1.0 + (np.nan_to_num(res, nan=1e9) / scale) ** 2)
        X = _weighted_solve(und, robust_w, basis, depth)
    res, depth = _residuals(X, und, P)
    res = np.where(valid, res, np.inf)
    inlier = valid & (res <= reject_px)
    # keep at least the two best views where fewer than two pass the threshold
    order = np.argsort(res, axis=1)
    best_two = np.zeros_like(valid)
    np.put_along_axis(best_two, order[:, :2], True, axis=1)
    few = inlier.sum(1) < 2
    inlier = np.where(few[:, None], best_two & valid, inlier)
    X = _weighted_solve(und, np.where(inlier, weights, 0.0), basis, depth)
    X[~enough] = np.nan
    inlier[~enough] = False
    return X, inlier
