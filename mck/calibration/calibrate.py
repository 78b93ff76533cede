"""Camera calibration from chessboard corners seen by several cameras (docs/algorithms.md §A.3, §A.4), fixed where the lab's
version was fragile:

* intrinsics per camera with ``cv2.calibrateCamera`` (k1, k2 and tangential p1, p2; k3 fixed), on a seeded
  subset of frames;
* board poses per camera and frame with ``solvePnP``; extrinsics by chaining relative poses along the maximum
  spanning tree of shared views (root camera = world);
* bundle adjustment of every camera (fx, fy, cx, cy, k1, k2, p1, p2, pose) and board pose: Levenberg–Marquardt with
  the **analytic** Jacobian and the Schur complement on the camera block (board poses are independent 6×6 blocks),
  soft-L1 robust weights (IRLS, scale 1 px), the root camera's pose held fixed (the lab's left the gauge free).
  Board views seen by a single camera are kept (they constrain that camera's intrinsics; the lab dropped them).
  Outliers are rejected twice — views whose initial error is far above the median, then, after a first
  adjustment, every (camera, frame) view whose mean reprojection error exceeds ``max(outlier_px, 5 × median)`` —
  and the adjustment is repeated. A view with a wrongly ordered corner set (a mirrored or shifted grid) cannot fit
  a rigid board and is rejected there. The **adjusted** parameters are returned (the lab's driver saved the
  initial ones — docs/algorithms.md §E quirk 1).

Arrays: ``corners`` (cameras, frames, points, 2) px, NaN where not detected; ``object_points`` (points, 3) mm.
Camera parameter vector (14): ``fx, fy, cx, cy, k1, k2, p1, p2, rx, ry, rz, tx, ty, tz`` (world → camera);
board pose (6): ``rx, ry, rz, tx, ty, tz`` (board → world).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np

from mck.geometry.camera import rodrigues, rotation_to_rvec

N_CAM = 14


def _to_matrix(pose6: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rodrigues(pose6[:3])
    T[:3, 3] = pose6[3:]
    return T


def _to_vector(T: np.ndarray) -> np.ndarray:
    return np.concatenate([rotation_to_rvec(T[:3, :3]), T[:3, 3]])


def intrinsics_from_views(corners: np.ndarray, object_points: np.ndarray, image_size: tuple[int, int],
                          max_frames: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """One camera's (K, dist (5,), RMS px) from its complete detections ``corners`` (frames, points, 2).

    Raises ValueError when the camera has fewer than 3 complete views."""
    complete = np.flatnonzero(np.isfinite(corners).all(axis=(1, 2)))
    if len(complete) < 3:
        raise ValueError(f"{len(complete)} complete board views (need at least 3)")
    if len(complete) > max_frames:
        complete = np.sort(np.random.default_rng(seed).choice(complete, max_frames, replace=False))
    obj = [object_points.astype(np.float32)] * len(complete)
    img = [corners[f].astype(np.float32).reshape(-1, 1, 2) for f in complete]
    rms, K, dist, _, _ = cv2.calibrateCamera(obj, img, tuple(int(v) for v in image_size), None, None,
                                             flags=cv2.CALIB_FIX_K3)
    return K, dist.ravel()[:5], float(rms)


def board_to_camera_poses(corners: np.ndarray, object_points: np.ndarray, K: np.ndarray,
                          dist: np.ndarray) -> np.ndarray:
    """(frames, 6) board → camera [rvec, t] per frame (solvePnP), NaN where not detected."""
    poses = np.full((corners.shape[0], 6), np.nan)
    for f in np.flatnonzero(np.isfinite(corners).all(axis=(1, 2))):   # frames with a board only
        ok, rvec, tvec = cv2.solvePnP(object_points.astype(np.float64), corners[f].astype(np.float64), K, dist)
        if ok:
            poses[f] = np.concatenate([rvec.ravel(), tvec.ravel()])
    return poses


def max_spanning_tree(weights: np.ndarray, root: int = 0, names=None) -> list[tuple[int, int]]:
    """Edges (parent, child) of the maximum spanning tree of a symmetric weight matrix, in order from the root
    (Prim). Raises ValueError when some camera shares no view with the others."""
    n = len(weights)
    in_tree = {root}
    edges = []
    while len(in_tree) < n:
        best, pair = 0, None
        for i in in_tree:
            for j in range(n):
                if j not in in_tree and weights[i, j] > best:
                    best, pair = weights[i, j], (i, j)
        if pair is None:
            missing = [str(names[i]) if names is not None else str(i) for i in sorted(set(range(n)) - in_tree)]
            raise ValueError(f"camera{'s' if len(missing) > 1 else ''} {', '.join(missing)} share"
                             f"{'s' if len(missing) == 1 else ''} no board view with the others")
        edges.append(pair)
        in_tree.add(pair[1])
    return edges


def average_poses(T: np.ndarray, axis: int = 0) -> np.ndarray:
    """Robust mean of rigid transforms ``T`` (..., 4, 4) along ``axis`` (NaN entries ignored): element-wise median
    of the rotation matrices projected back onto SO(3) (no rotation-vector wrap-around near 180°, unlike a median
    of rotation vectors) and the median translation. All-NaN → NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        M = np.nanmedian(T, axis=axis)
    out = np.full(M.shape, np.nan)
    ok = np.isfinite(M).all((-1, -2))
    if ok.any():
        U, _, Vt = np.linalg.svd(M[ok][:, :3, :3])
        D = np.ones(U.shape[:-1])
        D[:, -1] = np.sign(np.linalg.det(U @ Vt))
        R = (U * D[:, None, :]) @ Vt
        res = np.zeros((len(R), 4, 4))
        res[:, :3, :3] = R
        res[:, :3, 3] = M[ok][:, :3, 3]
        res[:, 3, 3] = 1.0
        out[ok] = res
    return out


def _matrices(poses6: np.ndarray) -> np.ndarray:
    """(..., 6) [rvec, t] → (..., 4, 4); NaN rows stay NaN."""
    T = np.zeros(poses6.shape[:-1] + (4, 4))
    T[..., :3, :3] = rodrigues(np.nan_to_num(poses6[..., :3]))
    T[..., :3, 3] = poses6[..., 3:]
    T[..., 3, 3] = 1.0
    T[~np.isfinite(poses6).all(-1)] = np.nan
    return T


def _vectors(T: np.ndarray) -> np.ndarray:
    """(..., 4, 4) → (..., 6); NaN stays NaN."""
    out = np.full(T.shape[:-2] + (6,), np.nan)
    ok = np.isfinite(T).all((-1, -2))
    if ok.any():
        out[ok] = np.concatenate([rotation_to_rvec(T[ok][:, :3, :3]), T[ok][:, :3, 3]], -1)
    return out


def chain_extrinsics(poses: np.ndarray, root: int = 0, names=None) -> np.ndarray:
    """World (= root camera) → camera (C, 6) from per-camera board poses ``poses`` (C, frames, 6): relative poses
    of camera pairs averaged over their shared views (``average_poses``), chained along the maximum spanning tree
    of shared views."""
    seen = np.isfinite(poses).all(-1)
    shared = (seen[:, None] & seen[None]).sum(-1).astype(float)
    np.fill_diagonal(shared, 0)
    T = _matrices(poses)
    extr = {root: np.eye(4)}
    for parent, child in max_spanning_tree(shared, root, names):
        common = np.flatnonzero(seen[parent] & seen[child])
        rel = T[child, common] @ np.linalg.inv(T[parent, common])
        extr[child] = average_poses(rel) @ extr[parent]
    return np.stack([_to_vector(extr[c]) for c in range(len(poses))])


def consensus_board_poses(poses: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Board → world (frames, 6): per frame the robust mean (``average_poses``) over the cameras that saw the board;
    NaN if none."""
    world_to_cam = _matrices(np.asarray(extrinsics, float))
    board_to_world = np.linalg.inv(world_to_cam)[:, None] @ _matrices(poses)      # (C, F, 4, 4), NaN unseen
    return _vectors(average_poses(board_to_world, axis=0))


def calibrate(corners: np.ndarray, object_points: np.ndarray, image_sizes, root: int = 0,
              n_frames_intrinsics: int = 100, seed: int = 0, names=None):
    """Initial calibration. Returns (extrinsics (C, 6), intrinsics [(K, dist)], board poses (frames, 6),
    per-camera intrinsic RMS px). Raises ValueError naming the camera (``names[c]``, else its index) when one
    cannot be initialised."""
    intrinsics, rms, poses = [], [], []
    for c in range(corners.shape[0]):
        try:
            K, dist, r = intrinsics_from_views(corners[c], object_points, image_sizes[c], n_frames_intrinsics, seed)
        except ValueError as exc:
            raise ValueError(f"camera {names[c] if names is not None else c}: {exc}") from exc
        intrinsics.append((K, dist))
        rms.append(r)
        poses.append(board_to_camera_poses(corners[c], object_points, K, dist))
    poses = np.stack(poses)
    extrinsics = chain_extrinsics(poses, root, names)
    return extrinsics, intrinsics, consensus_board_poses(poses, extrinsics), rms


# ---------------------------------------------------------------------------------------------------------------
# bundle adjustment


@dataclass
class BundleResult:
    extrinsics: np.ndarray          # (C, 6) world → camera
    intrinsics: list                # [(K, dist (5,))]
    board_poses: np.ndarray         # (frames used, 6) board → world
    frames: np.ndarray              # indices of the frames used
    rms_px: np.ndarray              # (C,) reprojection RMS per camera after adjustment
    residuals_px: list              # per camera: (n,) reprojection error of every corner used, px
    success: bool
    message: str
    views: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))   # (C, frames) views used
    rejected: np.ndarray = field(default_factory=lambda: np.zeros(0, int))      # (C,) views rejected as outliers
    iterations: int = 0


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) → (..., 3, 3) cross-product matrices."""
    z = np.zeros(v.shape[:-1])
    return np.stack([np.stack([z, -v[..., 2], v[..., 1]], -1), np.stack([v[..., 2], z, -v[..., 0]], -1),
                     np.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def _left_jacobian(rvec: np.ndarray) -> np.ndarray:
    """SO(3) left Jacobian (..., 3, 3): R(ω + δ) ≈ exp([J_l(ω) δ]×) R(ω)."""
    theta = np.linalg.norm(rvec, axis=-1)[..., None, None]
    K = _skew(rvec)
    small = theta < 1e-6
    t = np.where(small, 1.0, theta)
    a = np.where(small, 0.5 - theta ** 2 / 24, (1 - np.cos(t)) / t ** 2)
    b = np.where(small, 1 / 6 - theta ** 2 / 120, (t - np.sin(t)) / t ** 3)
    return np.eye(3) + a * K + b * (K @ K)


def project_views(cams: np.ndarray, frames: np.ndarray, obj: np.ndarray, view_cam: np.ndarray,
                  view_frame: np.ndarray, jacobian: bool = False):
    """Pixels (V, N, 2) of the board points ``obj`` (N, 3) for views (camera ``view_cam[v]``, board pose
    ``view_frame[v]``), and with ``jacobian`` the derivatives (V, N, 2, 14) w.r.t. the camera parameters and
    (V, N, 2, 6) w.r.t. the board pose."""
    Rf = rodrigues(frames[:, :3])[view_frame]                            # (V, 3, 3)
    RX = np.einsum("vij,nj->vni", Rf, obj)                               # board points rotated
    W = RX + frames[view_frame, None, 3:]                                # world
    p = cams[view_cam]                                                   # (V, 14)
    Rc = rodrigues(p[:, 8:11])
    RW = np.einsum("vij,vnj->vni", Rc, W)
    P = RW + p[:, None, 11:14]
    iz = 1.0 / P[..., 2]
    x, y = P[..., 0] * iz, P[..., 1] * iz
    k1, k2, p1, p2 = (p[:, None, i] for i in range(4, 8))
    fx, fy = p[:, None, 0], p[:, None, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    uv = np.stack([fx * xd + p[:, None, 2], fy * yd + p[:, None, 3]], -1)
    if not jacobian:
        return uv
    V, N = x.shape
    Jc = np.zeros((V, N, 2, N_CAM))
    Jc[..., 0, 0] = xd
    Jc[..., 1, 1] = yd
    Jc[..., 0, 2] = 1.0
    Jc[..., 1, 3] = 1.0
    Jc[..., 0, 4], Jc[..., 1, 4] = fx * x * r2, fy * y * r2
    Jc[..., 0, 5], Jc[..., 1, 5] = fx * x * r2 * r2, fy * y * r2 * r2
    Jc[..., 0, 6], Jc[..., 1, 6] = fx * 2 * x * y, fy * (r2 + 2 * y * y)
    Jc[..., 0, 7], Jc[..., 1, 7] = fx * (r2 + 2 * x * x), fy * 2 * x * y
    dr = k1 + 2 * k2 * r2                                                 # d radial / d r2
    dxd_dx = radial + 2 * x * x * dr + 2 * p1 * y + 6 * p2 * x
    dxd_dy = 2 * x * y * dr + 2 * p1 * x + 2 * p2 * y
    dyd_dx = 2 * x * y * dr + 2 * p1 * x + 2 * p2 * y
    dyd_dy = radial + 2 * y * y * dr + 6 * p1 * y + 2 * p2 * x
    # d(u, v)/dP = diag(f) · d(xd, yd)/d(x, y) · d(x, y)/dP
    D = np.empty((V, N, 2, 2))
    D[..., 0, 0], D[..., 0, 1] = fx * dxd_dx, fx * dxd_dy
    D[..., 1, 0], D[..., 1, 1] = fy * dyd_dx, fy * dyd_dy
    Pi = np.zeros((V, N, 2, 3))
    Pi[..., 0, 0] = iz
    Pi[..., 1, 1] = iz
    Pi[..., 0, 2] = -x * iz
    Pi[..., 1, 2] = -y * iz
    A = D @ Pi                                                           # (V, N, 2, 3) d uv / d P
    Jc[..., 11:14] = A
    Jc[..., 8:11] = -A @ _skew(RW) @ _left_jacobian(p[:, 8:11])[:, None]
    AR = A @ Rc[:, None]                                                 # d uv / d W
    Jf = np.empty((V, N, 2, 6))
    Jf[..., 3:] = AR
    Jf[..., :3] = -AR @ _skew(RX) @ _left_jacobian(frames[view_frame, :3])[:, None]
    return uv, Jc, Jf


def _views_cost(cams, frames, obj, view_cam, view_frame, uv, f_scale):
    pred = project_views(cams, frames, obj, view_cam, view_frame)
    r = pred - uv
    s2 = np.nan_to_num(np.sum(r * r, -1), nan=0.0)
    return float(np.sum(2 * f_scale ** 2 * (np.sqrt(1 + s2 / f_scale ** 2) - 1))), r


def _levenberg_marquardt(cams, frames, obj, view_cam, view_frame, uv, free_cam, f_scale=1.0,
                         max_iter=100, tol=1e-10):
    """Robust (soft-L1, IRLS) LM with the Schur complement on the camera block. Returns (cams, frames, info)."""
    C, F = len(cams), len(frames)
    valid = np.isfinite(uv).all(-1)                                      # (V, N)
    uv = np.where(valid[..., None], uv, 0.0)
    # pairs of views that share a frame (for the Schur complement), and the gradient bookkeeping
    order = np.argsort(view_frame, kind="stable")
    pa, pb = [], []
    starts = np.flatnonzero(np.r_[True, np.diff(view_frame[order]) != 0])
    ends = np.r_[starts[1:], len(order)]
    for s, e in zip(starts, ends):                     # ≤ 6 views per frame
        idx = order[s:e]
        pa.append(np.repeat(idx, len(idx)))
        pb.append(np.tile(idx, len(idx)))
    pa, pb = np.concatenate(pa), np.concatenate(pb)
    free = free_cam.ravel()
    lam = 1e-3
    cost, _ = _views_cost(cams, frames, obj, view_cam, view_frame, uv, f_scale)
    message = "maximum number of iterations reached"
    it = 0
    for it in range(1, max_iter + 1):
        pred, Jc, Jf = project_views(cams, frames, obj, view_cam, view_frame, jacobian=True)
        r = pred - uv
        s2 = np.sum(r * r, -1)
        w = np.where(valid, 1.0 / np.sqrt(1.0 + s2 / f_scale ** 2), 0.0)       # soft-L1 IRLS weights
        sw = np.sqrt(w)[..., None, None]
        Jcw = (Jc * sw).reshape(len(view_cam), -1, N_CAM)
        Jfw = (Jf * sw).reshape(len(view_cam), -1, 6)
        rw = (r * np.sqrt(w)[..., None]).reshape(len(view_cam), -1)
        A = np.einsum("vki,vkj->vij", Jcw, Jcw)                           # (V, 14, 14)
        B = np.einsum("vki,vkj->vij", Jfw, Jfw)                           # (V, 6, 6)
        Wv = np.einsum("vki,vkj->vij", Jcw, Jfw)                          # (V, 14, 6)
        gc_v = np.einsum("vki,vk->vi", Jcw, rw)
        gf_v = np.einsum("vki,vk->vi", Jfw, rw)
        U = np.zeros((C, N_CAM, N_CAM))
        np.add.at(U, view_cam, A)
        V = np.zeros((F, 6, 6))
        np.add.at(V, view_frame, B)
        gc = np.zeros((C, N_CAM))
        np.add.at(gc, view_cam, gc_v)
        gf = np.zeros((F, 6))
        np.add.at(gf, view_frame, gf_v)
        gc = gc * free_cam
        improved = False
        while lam < 1e12:
            Ud = U + lam * (np.einsum("cii->ci", U)[..., None] * np.eye(N_CAM) + 1e-9 * np.eye(N_CAM))
            Vd = V + lam * (np.einsum("fii->fi", V)[..., None] * np.eye(6) + 1e-9 * np.eye(6))
            Vinv = np.linalg.inv(Vd)
            Y = Wv @ Vinv[view_frame]                                     # (V, 14, 6)
            S = np.zeros((C, C, N_CAM, N_CAM))
            np.add.at(S, (view_cam[pa], view_cam[pb]), -Y[pa] @ np.swapaxes(Wv[pb], 1, 2))
            S[np.arange(C), np.arange(C)] += Ud
            S = S.transpose(0, 2, 1, 3).reshape(C * N_CAM, C * N_CAM)
            rhs = -gc.ravel().copy()
            corr = np.zeros((C, N_CAM))
            np.add.at(corr, view_cam, np.einsum("vij,vj->vi", Y, gf[view_frame]))
            rhs += corr.ravel()
            # fixed parameters: identity rows/columns
            S[~free] = 0.0
            S[:, ~free] = 0.0
            S[~free, ~free] = 1.0
            rhs[~free] = 0.0
            try:
                dc = np.linalg.solve(S, rhs).reshape(C, N_CAM)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            wd = np.zeros((F, 6))
            np.add.at(wd, view_frame, np.einsum("vij,vi->vj", Wv, dc[view_cam]))
            df = np.einsum("fij,fj->fi", Vinv, -gf - wd)
            new_cams, new_frames = cams + dc, frames + df
            new_cost, _ = _views_cost(new_cams, new_frames, obj, view_cam, view_frame, uv, f_scale)
            if np.isfinite(new_cost) and new_cost < cost:
                rel = (cost - new_cost) / max(cost, 1e-300)
                cams, frames, cost = new_cams, new_frames, new_cost
                lam = max(lam / 3, 1e-9)
                improved = True
                break
            lam *= 5
        if not improved:
            message = "converged (no further decrease)"
            break
        if rel < tol:
            message = f"converged (relative cost decrease {rel:.1e})"
            break
    return cams, frames, {"cost": cost, "message": message, "iterations": it}


def _camera_vector(K, dist, extrinsic) -> np.ndarray:
    d = np.zeros(4)
    d[:min(4, len(np.ravel(dist)))] = np.ravel(dist)[:4]
    return np.concatenate([[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], d, extrinsic])


def bundle_adjust(corners: np.ndarray, extrinsics: np.ndarray, intrinsics, object_points: np.ndarray,
                  board_poses: np.ndarray, root: int = 0, n_frames: int | None = 5000, ftol: float = 1e-10,
                  outlier_threshold: float | None = None, seed: int = 0, max_nfev: int = 100,
                  min_cameras: int = 1, outlier_px: float = 1.0, f_scale: float = 1.0,
                  fix_tangential: bool = False, names=None) -> BundleResult:
    """Refine cameras and board poses jointly (see module docstring).

    ``board_poses`` (frames, 6) initial board → world (NaN where unknown: such frames are initialised from the
    first camera that saw them). ``n_frames``: at most this many frames (seeded sample). ``outlier_threshold``:
    initial per-view mean error above which a view is dropped before adjusting (default 5 × median, at least
    ``4 × outlier_px``); ``outlier_px``: after the first adjustment views with mean error above
    ``max(outlier_px, 5 × median)`` are dropped and the adjustment repeated (at most twice). ``max_nfev``: LM
    iterations per adjustment. Raises ValueError naming the camera (``names[c]``) when one is left without views.
    """
    C, F, N, _ = corners.shape
    seen = np.isfinite(corners).all(axis=(2, 3))                         # (C, F) complete views
    cams = np.stack([_camera_vector(K, d, e) for (K, d), e in zip(intrinsics, extrinsics)])
    poses = np.array(board_poses, dtype=float, copy=True)
    # frames unknown to the consensus (seen by one camera whose pose was not estimated): PnP in that camera
    for f in np.flatnonzero(seen.any(0) & ~np.isfinite(poses).all(-1)):
        c = int(np.flatnonzero(seen[:, f])[0])
        K, dist = intrinsics[c]
        ok, rvec, tvec = cv2.solvePnP(object_points.astype(np.float64), corners[c, f].astype(np.float64), K,
                                      np.asarray(dist, float))
        if ok:
            T = np.linalg.inv(_to_matrix(extrinsics[c])) @ _to_matrix(np.r_[rvec.ravel(), tvec.ravel()])
            poses[f] = _to_vector(T)
    candidates = np.flatnonzero((seen.sum(0) >= min_cameras) & np.isfinite(poses).all(-1))
    if n_frames is not None and len(candidates) > n_frames:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, n_frames, replace=False))
    use = np.zeros((C, F), bool)
    use[:, candidates] = seen[:, candidates]

    def views_of(mask):
        empty = np.flatnonzero(~mask.any(1))
        if len(empty):
            label = ", ".join(str(names[c]) if names is not None else str(c) for c in empty)
            raise ValueError(f"camera {label}: no board view left for the bundle adjustment "
                             f"({int(seen[empty].sum())} detected, all rejected as outliers)")
        return np.nonzero(mask)

    def view_errors(cams_, poses_, vc, vf):
        pred = project_views(cams_, poses_, object_points, vc, vf)
        return np.linalg.norm(pred - corners[vc, vf], axis=-1).mean(-1)     # (V,) mean error per view

    # 1. gross outliers of the initial solution (per view, relative to the median view)
    vc, vf = views_of(use)
    err = view_errors(cams, poses, vc, vf)
    if outlier_threshold is not None:
        threshold = np.full(C, float(outlier_threshold))
    else:                                # per camera: an initial camera a few mm off must not lose all its views
        median = np.array([np.median(err[vc == c]) if (vc == c).any() else 0.0 for c in range(C)])
        threshold = np.maximum(5 * median, 4 * outlier_px)
    bad = ~(err <= threshold[vc])
    use[vc[bad], vf[bad]] = False
    rejected = np.bincount(vc[bad], minlength=C)
    free = np.ones((C, N_CAM), bool)
    free[root, 8:] = False
    if fix_tangential:
        free[:, 6:8] = False
    info = {"message": "", "iterations": 0}
    iterations = 0
    for round_ in range(3):
        # drop frames left without any view, renumber the remaining ones for the solver
        frames_used = np.flatnonzero(use.any(0))
        vc, vf = views_of(use)
        remap = np.full(F, -1)
        remap[frames_used] = np.arange(len(frames_used))
        cams, solved_frames, info = _levenberg_marquardt(cams, poses[frames_used], object_points, vc, remap[vf],
                                                         corners[vc, vf], free, f_scale, max_nfev, ftol)
        iterations += info["iterations"]
        poses[frames_used] = solved_frames
        err = view_errors(cams, poses, vc, vf)
        threshold = max(outlier_px, 5 * float(np.median(err)))
        bad = err > threshold
        if not bad.any() or round_ == 2:
            break
        use[vc[bad], vf[bad]] = False
        rejected += np.bincount(vc[bad], minlength=C)
    frames_used = np.flatnonzero(use.any(0))
    vc, vf = views_of(use)
    pred = project_views(cams, poses, object_points, vc, vf)
    point_err = np.linalg.norm(pred - corners[vc, vf], axis=-1)              # (V, N)
    per_cam = [point_err[vc == c].ravel() for c in range(C)]
    rms = np.array([np.sqrt(np.mean(e ** 2)) if len(e) else np.nan for e in per_cam])
    new_intr = []
    for c in range(C):
        K = np.array([[cams[c, 0], 0, cams[c, 2]], [0, cams[c, 1], cams[c, 3]], [0, 0, 1.0]])
        new_intr.append((K, np.concatenate([cams[c, 4:8], [0.0]])))
    return BundleResult(cams[:, 8:14].copy(), new_intr, poses[frames_used], frames_used, rms, per_cam,
                        info["message"].startswith("converged"), info["message"], use, rejected, iterations)
