"""Calibration refinement on the animal: bundle adjustment of the camera poses (and optionally focal length,
principal point and k1) on the keypoint detections of sessions, without a board.

Method (variable projection): the 3D points are not free parameters but the confidence-weighted, depth-normalised
linear triangulation of the current cameras (``mck.geometry.triangulate``'s closed-form solve), so the solver only
sees the C × 6 (+ 4) camera parameters; residuals are the distorted-pixel reprojection errors of every sampled
observation (vectorized), the Jacobian is a dense finite difference over the camera parameters (cheap: one
triangulation of the sample per column). Robust soft-L1 loss with annealed scales, outlier rejection between
rounds, point sampling balanced over camera pairs and image areas. Camera 0 stays the world frame (fixed); the
scale is the input's (the spread of the camera centres, or camera 1's baseline, is restored at the end: the
reprojection errors do not change when the world is scaled about camera 0).
"""

from __future__ import annotations

import time

import numpy as np

from mck.geometry.camera import Intrinsics, distort_normalized, rodrigues, rotation_to_rvec, undistort_points
from mck.geometry.triangulate import _normal_basis, _solve3, reprojection_errors, triangulate

_ROT, _TRANS, _FOCAL, _CENTRE, _K1 = 0.01, 5.0, 10.0, 5.0, 0.01     # parameter units (rad, mm, px, px, 1)


def sample_points(uv: np.ndarray, valid: np.ndarray, n: int, grid: int = 4, seed: int = 0) -> np.ndarray:
    """Indices into the flattened (frames × keypoints) points of ``n`` points with ≥ 2 valid views, sampled with
    weights that favour rare camera pairs and rare image cells (``grid`` × ``grid`` per camera over the observed
    range), so every pair and the whole image area are represented.

    uv : (N, C, 2) px; valid : (N, C) bool. Returns sorted indices (≤ n)."""
    N, C = valid.shape
    candidates = np.flatnonzero(valid.sum(1) >= 2)
    if len(candidates) <= n:
        return candidates
    v = valid[candidates]
    xy = uv[candidates]
    weight = np.zeros(len(candidates))
    for c in range(C):
        on = v[:, c]
        if not on.any():
            continue
        lo = np.nanpercentile(xy[on, c], 1, axis=0)
        hi = np.nanpercentile(xy[on, c], 99, axis=0)
        cell = np.clip(((xy[on, c] - lo) / np.maximum(hi - lo, 1e-9) * grid).astype(int), 0, grid - 1)
        cid = cell[:, 0] * grid + cell[:, 1]
        counts = np.bincount(cid, minlength=grid * grid)
        weight[on] += 1.0 / counts[cid]
    for i in range(C):
        for j in range(i + 1, C):
            both = v[:, i] & v[:, j]
            if both.any():
                weight[both] += 1.0 / both.sum()
    rng = np.random.default_rng(seed)
    keys = np.log(rng.uniform(size=len(candidates))) / weight              # Efraimidis–Spirakis: top-n keys
    return np.sort(candidates[np.argpartition(-keys, n - 1)[:n]])


def _solve_points(und: np.ndarray, w: np.ndarray, basis: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
    """``mck.geometry.triangulate._weighted_solve`` with einsum instead of a BLAS product: the inner dimension is
    tiny, and threaded BLAS on a busy machine costs more than the arithmetic."""
    ww = w if depth is None else w / np.maximum(depth, 1e-6) ** 2
    ww = np.where(np.isfinite(ww), ww, 0.0)
    u, v = und[..., 0], und[..., 1]
    features = np.concatenate([ww * (u * u + v * v), ww * u, ww * v, ww], axis=1)     # (N, 4C)
    return _solve3(np.einsum("nk,kj->nj", features, basis).reshape(-1, 4, 4))


class _Model:
    """Camera parameters ↔ the solver's vector; residuals of the sampled observations."""

    def __init__(self, extrinsics, intrinsics, refine_intrinsics: bool, uv: np.ndarray):
        self.C = len(intrinsics)
        self.R0 = rodrigues(np.asarray(extrinsics, float)[:, :3])
        self.t0 = np.asarray(extrinsics, float)[:, 3:].copy()
        self.K0 = np.stack([np.asarray(K, float) for K, _ in intrinsics])
        self.d0 = np.stack([(np.asarray(d, float).ravel().tolist() + [0.0] * 5)[:5] for _, d in intrinsics])
        self.refine_intrinsics = refine_intrinsics
        self.per_cam = 10 if refine_intrinsics else 6
        self.uv = uv                                                     # (N, C, 2) distorted px
        self.und0 = self._undistort(self.K0, self.d0) if not refine_intrinsics else None

    @property
    def size(self) -> int:
        return (self.C - 1) * 6 + (self.C * 4 if self.refine_intrinsics else 0)

    def unpack(self, x: np.ndarray):
        R, t = self.R0.copy(), self.t0.copy()
        ext = x[: (self.C - 1) * 6].reshape(self.C - 1, 6)
        R[1:] = rodrigues(ext[:, :3] * _ROT) @ self.R0[1:]
        t[1:] = self.t0[1:] + ext[:, 3:] * _TRANS
        K, d = self.K0, self.d0
        if self.refine_intrinsics:
            intr = x[(self.C - 1) * 6:].reshape(self.C, 4)
            K = self.K0.copy()
            scale = 1 + intr[:, 0] * _FOCAL / self.K0[:, 0, 0]
            K[:, 0, 0] *= scale
            K[:, 1, 1] *= scale
            K[:, 0, 2] += intr[:, 1] * _CENTRE
            K[:, 1, 2] += intr[:, 2] * _CENTRE
            d = self.d0.copy()
            d[:, 0] += intr[:, 3] * _K1
        return R, t, K, d

    def _undistort(self, K, d):
        return np.stack([undistort_points(self.uv[:, c], K[c], d[c]) for c in range(self.C)], axis=1)

    def points(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(N, 3) weighted, depth-normalised linear triangulation of the sample with cameras ``x``."""
        R, t, K, d = self.unpack(x)
        und = self.und0 if self.und0 is not None else self._undistort(K, d)
        P = K @ np.concatenate([R, t[:, :, None]], axis=2)
        basis = _normal_basis(P)
        X = _solve_points(und, w, basis, None)
        depth = np.einsum("nj,cj->nc", X, P[:, 2, :3]) + P[:, 2, 3]      # (N, C)
        return _solve_points(und, w, basis, depth)

    def project(self, x: np.ndarray, X: np.ndarray) -> np.ndarray:
        R, t, K, d = self.unpack(x)
        cam = np.einsum("cij,nj->nci", R, X) + t                           # (N, C, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = cam[..., :2] / cam[..., 2:3]
        out = np.empty_like(xy)
        for c in range(self.C):
            out[:, c] = distort_normalized(xy[:, c], d[c]) @ K[c, :2, :2].T + K[c, :2, 2]
        return out

    def residuals(self, x: np.ndarray, w: np.ndarray, mask: np.ndarray, sw: np.ndarray) -> np.ndarray:
        X = self.points(x, w)
        r = (self.project(x, X) - self.uv)[mask] * sw[:, None]
        return np.nan_to_num(r, nan=1e4, posinf=1e4, neginf=1e4).ravel()

    def extrinsics_intrinsics(self, x: np.ndarray):
        R, t, K, d = self.unpack(x)
        ext = np.concatenate([rotation_to_rvec(R), t], axis=1)
        return ext, [(K[c].copy(), d[c].copy()) for c in range(self.C)]


def _robust_lm(fun, x: np.ndarray, f_scale: float, max_iter: int, tol: float, step: float = 1e-4
               ) -> tuple[np.ndarray, int]:
    """Levenberg–Marquardt on a soft-L1 loss (IRLS: residual pairs weighted 1/sqrt(1 + |r|²/f²)) with a forward-
    difference Jacobian over the few camera parameters. Normal equations are (P, P): no large factorisation.
    Returns (x, iterations)."""

    def cost_of(r):
        s2 = (r.reshape(-1, 2) ** 2).sum(1)
        return float(np.sum(2 * f_scale ** 2 * (np.sqrt(1 + s2 / f_scale ** 2) - 1)))

    r = fun(x)
    cost = cost_of(r)
    lam = 1e-3
    it = 0
    for it in range(1, max_iter + 1):
        J = np.empty((len(r), len(x)))
        for j in range(len(x)):
            xj = x.copy()
            xj[j] += step
            J[:, j] = (fun(xj) - r) / step
        s2 = (r.reshape(-1, 2) ** 2).sum(1)
        w = np.repeat(1.0 / np.sqrt(1 + s2 / f_scale ** 2), 2)
        Jw = J * w[:, None]
        A = np.einsum("mi,mj->ij", Jw, J)
        g = np.einsum("mi,m->i", Jw, r)
        improved = False
        while lam < 1e10:
            Ad = A + lam * (np.diag(np.diag(A)) + 1e-9 * np.eye(len(x)))
            try:
                dx = np.linalg.solve(Ad, -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            r_new = fun(x + dx)
            new_cost = cost_of(r_new)
            if np.isfinite(new_cost) and new_cost < cost:
                rel = (cost - new_cost) / max(cost, 1e-300)
                x, r, cost = x + dx, r_new, new_cost
                lam = max(lam / 3, 1e-9)
                improved = True
                break
            lam *= 5
        if not improved or rel < tol:
            break
    return x, it


def _centres(extrinsics: np.ndarray) -> np.ndarray:
    R = rodrigues(extrinsics[:, :3])
    return -np.einsum("cji,cj->ci", R, extrinsics[:, 3:])


def _restore_scale(new: np.ndarray, old: np.ndarray, scale: str) -> np.ndarray:
    """Scale the world about camera 0's centre so the camera centres' spread (``scale="spread"``) or camera 1's
    distance to camera 0 (``"baseline"``) equals ``old``'s."""
    cn, co = _centres(new), _centres(old)
    if scale == "baseline":
        s = np.linalg.norm(co[1] - co[0]) / max(np.linalg.norm(cn[1] - cn[0]), 1e-12)
    else:
        s = np.linalg.norm(co - co.mean(0), axis=1).mean() / max(np.linalg.norm(cn - cn.mean(0), axis=1).mean(),
                                                                  1e-12)
    centres = cn[0] + s * (cn - cn[0])
    out = new.copy()
    R = rodrigues(new[:, :3])
    out[:, 3:] = -np.einsum("cij,cj->ci", R, centres)
    return out


def _errors(uv, extrinsics, intrinsics, conf):
    """Per observation (frames, cameras, keypoints) px: reprojection error against the robust triangulation."""
    X = triangulate(uv, extrinsics, intrinsics, conf=conf)
    return reprojection_errors(X, uv, extrinsics, intrinsics)


def _stats(err: np.ndarray) -> dict:
    e = err[np.isfinite(err)]
    per_cam = [err[:, c][np.isfinite(err[:, c])] for c in range(err.shape[1])]
    return {"median_px": float(np.median(e)) if len(e) else None, "mean_px": float(np.mean(e)) if len(e) else None,
            "median_px_per_camera": [float(np.median(p)) if len(p) else None for p in per_cam]}


def refine_extrinsics(uv: np.ndarray, extrinsics: np.ndarray, intrinsics: Intrinsics, conf: np.ndarray | None = None,
                      refine_intrinsics: bool = False, *, conf_threshold: float = 0.5, n_points: int = 6000,
                      f_scales=(30.0, 8.0, 3.0), reject_px: float = 15.0, reject_factor: float = 4.0,
                      scale: str = "spread", max_nfev: int = 60, seed: int = 0, eval_points: int = 200_000,
                      polish_points: int = 15000
                      ) -> tuple[np.ndarray, list, dict]:
    """Refine the cameras on keypoint detections.

    uv : (frames, cameras, keypoints, 2) distorted px, NaN = missing; extrinsics (C, 6) rvec + t world → camera
    (mm); intrinsics [(K (3, 3), dist (5,))]; conf (frames, cameras, keypoints) or None (= 1): views below
    ``conf_threshold`` are ignored, the others weighted by it. ``refine_intrinsics``: also focal length (one scale
    for fx, fy), principal point and k1 per camera (weakly constrained by an animal in a small volume: focal length
    trades against depth; prefer the board's). ``n_points``: 3D points sampled (balanced over camera pairs and
    image cells); one round per ``f_scales`` entry (soft-L1 scale, px), observations further than
    ``max(reject_px, reject_factor × camera median)`` rejected after each round. ``scale``: "spread" (camera
    centres' spread kept) or "baseline" (camera 1's distance to camera 0 kept). Camera 0 is fixed. When
    ``polish_points`` > ``n_points``, a last round on that many freshly sampled points (few iterations from the
    converged cameras) polishes the result.

    Returns (extrinsics (C, 6), intrinsics, info) with ``info``: ``before``/``after`` (median/mean reprojection
    error px over at most ``eval_points`` points against the robust triangulation, and per camera), ``iterations``,
    ``points_used``, ``observations_used``, ``rejected``, ``seconds``."""
    t_start = time.perf_counter()
    uv = np.asarray(uv, dtype=float)
    if uv.ndim != 4 or uv.shape[-1] != 2:
        raise ValueError(f"uv: expected shape (frames, cameras, keypoints, 2), got {uv.shape}")
    T, C, K, _ = uv.shape
    extrinsics = np.asarray(extrinsics, dtype=float)
    if extrinsics.shape != (C, 6) or len(intrinsics) != C:
        raise ValueError(f"uv has {C} cameras but extrinsics/intrinsics describe {len(intrinsics)}")
    conf = np.ones(uv.shape[:3]) if conf is None else np.nan_to_num(np.asarray(conf, dtype=float), nan=0.0)
    flat_uv = np.moveaxis(uv, 1, 2).reshape(T * K, C, 2)
    flat_conf = np.moveaxis(conf, 1, 2).reshape(T * K, C)
    valid = np.isfinite(flat_uv).all(-1) & (flat_conf >= conf_threshold)
    rng = np.random.default_rng(seed)
    # evaluation set: every usable point up to eval_points
    usable = np.flatnonzero(valid.sum(1) >= 2)
    if len(usable) < 20:
        raise ValueError(f"only {len(usable)} points are seen by ≥ 2 cameras with confidence ≥ {conf_threshold}")
    ev = np.sort(rng.choice(usable, eval_points, replace=False)) if len(usable) > eval_points else usable
    ev_uv = np.where(valid[ev, :, None], flat_uv[ev], np.nan)[:, :, None]       # (n, C, 1, 2): points as frames
    ev_conf = flat_conf[ev][:, :, None]
    before = _stats(_errors(ev_uv, extrinsics, intrinsics, ev_conf)[:, :, 0])

    sample = sample_points(flat_uv, valid, n_points, seed=seed)
    s_uv = flat_uv[sample]
    s_w = np.where(valid[sample], flat_conf[sample], 0.0)
    model = _Model(extrinsics, intrinsics, refine_intrinsics, np.where(s_w[..., None] > 0, s_uv, 0.0))
    x = np.zeros(model.size)
    iterations, rejected = 0, 0
    for r, f_scale in enumerate(f_scales):
        keep = (s_w > 0).sum(1) >= 2
        w = np.where(keep[:, None], s_w, 0.0)
        mask = w > 0
        sw = np.sqrt(w[mask])
        x, nfev = _robust_lm(lambda p: model.residuals(p, w, mask, sw), x, f_scale, max_nfev,
                             1e-6 if r < len(f_scales) - 1 else 1e-9)
        iterations += nfev
        X = model.points(x, w)
        err = np.linalg.norm(model.project(x, X) - model.uv, axis=-1)          # (n, C)
        err = np.where(mask, err, np.nan)
        if r == len(f_scales) - 1:
            break
        with np.errstate(all="ignore"):
            med = np.array([np.nanmedian(err[:, c]) if np.isfinite(err[:, c]).any() else 0.0 for c in range(C)])
        limit = np.maximum(reject_px, reject_factor * med)
        bad = mask & (err > limit[None])
        rejected += int(bad.sum())
        s_w = np.where(bad, 0.0, s_w)
    new_ext, new_intr = model.extrinsics_intrinsics(x)
    points_used = int(keep.sum())
    if polish_points > n_points:
        # polish on a larger fresh sample, outliers of the converged cameras left out
        sample = sample_points(flat_uv, valid, polish_points, seed=seed + 1)
        s_w = np.where(valid[sample], flat_conf[sample], 0.0)
        model = _Model(new_ext, new_intr, refine_intrinsics, np.where(s_w[..., None] > 0, flat_uv[sample], 0.0))
        x = np.zeros(model.size)
        X = model.points(x, s_w)
        err = np.where(s_w > 0, np.linalg.norm(model.project(x, X) - model.uv, axis=-1), np.nan)
        with np.errstate(all="ignore"):
            med = np.array([np.nanmedian(err[:, c]) if np.isfinite(err[:, c]).any() else 0.0 for c in range(C)])
        s_w = np.where(err > np.maximum(reject_px, reject_factor * med)[None], 0.0, s_w)
        keep = (s_w > 0).sum(1) >= 2
        w = np.where(keep[:, None], s_w, 0.0)
        mask = w > 0
        x, nfev = _robust_lm(lambda p: model.residuals(p, w, mask, np.sqrt(w[mask])), x, f_scales[-1], 10, 1e-9)
        iterations += nfev
        new_ext, new_intr = model.extrinsics_intrinsics(x)
        points_used = int(keep.sum())
    new_ext = _restore_scale(new_ext, extrinsics, scale)
    new_ext[0] = extrinsics[0]
    after = _stats(_errors(ev_uv, new_ext, new_intr, ev_conf)[:, :, 0])
    info = {"before": before, "after": after, "iterations": iterations, "points_used": points_used,
            "observations_used": int((s_w > 0).sum()), "rejected": rejected, "eval_points": int(len(ev)),
            "refine_intrinsics": bool(refine_intrinsics), "scale": scale,
            "seconds": round(time.perf_counter() - t_start, 3)}
    return new_ext, new_intr, info
