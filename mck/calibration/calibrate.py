"""Camera calibration from chessboard corners seen by several cameras (§A.3, §A.4), fixed where the lab's
version was fragile:

* intrinsics per camera with ``cv2.calibrateCamera`` (k1, k2 and tangential p1, p2; k3 fixed), on a seeded
  subset of frames;
* board poses per camera and frame with ``solvePnP``; extrinsics by chaining relative poses along the maximum
  spanning tree of shared views (root camera = world);
* bundle adjustment of every camera (fx, fy, cx, cy, k1, k2, p1, p2, pose) and board pose with
  ``scipy.optimize.least_squares`` (soft-L1 loss, sparse Jacobian), the root camera's pose held fixed (the lab's
  left the gauge free), outlier frames removed first, seeded frame sampling, and the **adjusted** parameters
  returned (the lab's driver saved the initial ones — §E quirk 1).

Arrays: ``corners`` (cameras, frames, points, 2) px, NaN where not detected; ``object_points`` (points, 3) mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix

from mck.geometry.camera import distort_normalized, rodrigues, rotation_to_rvec


def _to_matrix(pose6: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rodrigues(pose6[:3])
    T[:3, 3] = pose6[3:]
    return T


def _to_vector(T: np.ndarray) -> np.ndarray:
    return np.concatenate([rotation_to_rvec(T[:3, :3]), T[:3, 3]])


def intrinsics_from_views(corners: np.ndarray, object_points: np.ndarray, image_size: tuple[int, int],
                          max_frames: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """One camera's (K, dist (5,), RMS px) from its complete detections ``corners`` (frames, points, 2)."""
    complete = np.flatnonzero(np.isfinite(corners).all(axis=(1, 2)))
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


def max_spanning_tree(weights: np.ndarray, root: int = 0) -> list[tuple[int, int]]:
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
            missing = sorted(set(range(n)) - in_tree)
            raise ValueError(f"cameras {missing} share no board view with the others")
        edges.append(pair)
        in_tree.add(pair[1])
    return edges


def chain_extrinsics(poses: np.ndarray, root: int = 0) -> np.ndarray:
    """World (= root camera) → camera (C, 6) from per-camera board poses ``poses`` (C, frames, 6)."""
    seen = np.isfinite(poses).all(-1)
    shared = (seen[:, None] & seen[None]).sum(-1).astype(float)
    np.fill_diagonal(shared, 0)
    extr = {root: np.eye(4)}
    for parent, child in max_spanning_tree(shared, root):
        common = np.flatnonzero(seen[parent] & seen[child])
        rel = np.stack([_to_vector(_to_matrix(poses[child, f]) @ np.linalg.inv(_to_matrix(poses[parent, f])))
                        for f in common])
        extr[child] = _to_matrix(np.median(rel, axis=0)) @ extr[parent]
    return np.stack([_to_vector(extr[c]) for c in range(len(poses))])


def consensus_board_poses(poses: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Board → world (frames, 6): per frame the median over the cameras that saw the board; NaN if none."""
    C, F, _ = poses.shape
    out = np.full((C, F, 6), np.nan)
    for c in range(C):
        inv = np.linalg.inv(_to_matrix(extrinsics[c]))
        for f in np.flatnonzero(np.isfinite(poses[c]).all(-1)):
            out[c, f] = _to_vector(inv @ _to_matrix(poses[c, f]))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(out, axis=0)


def calibrate(corners: np.ndarray, object_points: np.ndarray, image_sizes, root: int = 0,
              n_frames_intrinsics: int = 100, seed: int = 0):
    """Initial calibration. Returns (extrinsics (C, 6), intrinsics [(K, dist)], board poses (frames, 6),
    per-camera intrinsic RMS px)."""
    intrinsics, rms, poses = [], [], []
    for c in range(corners.shape[0]):
        K, dist, r = intrinsics_from_views(corners[c], object_points, image_sizes[c], n_frames_intrinsics, seed)
        intrinsics.append((K, dist))
        rms.append(r)
        poses.append(board_to_camera_poses(corners[c], object_points, K, dist))
    poses = np.stack(poses)
    extrinsics = chain_extrinsics(poses, root)
    return extrinsics, intrinsics, consensus_board_poses(poses, extrinsics), rms


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


def _project_observations(cam_params, frame_params, obj, cam_idx, frame_idx, point_idx):
    """Pixel predictions (M, 2) of observations: board point → world (frame pose) → camera → distort → K."""
    Rf = rodrigues(frame_params[:, :3])
    world = np.einsum("mij,mj->mi", Rf[frame_idx], obj[point_idx]) + frame_params[frame_idx, 3:]
    Rc = rodrigues(cam_params[:, 8:11])
    cam = np.einsum("mij,mj->mi", Rc[cam_idx], world) + cam_params[cam_idx, 11:14]
    xy = cam[:, :2] / cam[:, 2:3]
    p = cam_params[cam_idx]
    dist = np.stack([p[:, 4], p[:, 5], p[:, 6], p[:, 7], np.zeros(len(p))], -1)
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + dist[:, 0] * r2 + dist[:, 1] * r2 * r2
    xd = x * radial + 2 * dist[:, 2] * x * y + dist[:, 3] * (r2 + 2 * x * x)
    yd = y * radial + dist[:, 2] * (r2 + 2 * y * y) + 2 * dist[:, 3] * x * y
    return np.stack([p[:, 0] * xd + p[:, 2], p[:, 1] * yd + p[:, 3]], -1)


def bundle_adjust(corners: np.ndarray, extrinsics: np.ndarray, intrinsics, object_points: np.ndarray,
                  board_poses: np.ndarray, root: int = 0, n_frames: int | None = 5000, ftol: float = 1e-4,
                  outlier_threshold: float | None = None, seed: int = 0, max_nfev: int = 100) -> BundleResult:
    """Refine cameras and board poses jointly (see module docstring)."""
    C, F, N, _ = corners.shape
    seen = np.isfinite(corners).all(axis=(2, 3))                       # (C, F)
    candidates = np.flatnonzero((seen.sum(0) >= 2) & np.isfinite(board_poses).all(-1))
    cam0 = np.stack([np.concatenate([[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], np.asarray(d)[:4], e])
                     for (K, d), e in zip(intrinsics, extrinsics)])
    # outlier frames: worst per-camera mean error above 5× the median point error (§A.4 step 2)
    obs = np.argwhere(seen[:, candidates])
    cam_idx, fpos = obs[:, 0], obs[:, 1]
    cam_idx = np.repeat(cam_idx, N)
    fpos = np.repeat(fpos, N)
    point_idx = np.tile(np.arange(N), len(obs))
    frame_idx = candidates[fpos]
    uv = corners[cam_idx, frame_idx, point_idx]
    pred = _project_observations(cam0, board_poses, object_points, cam_idx, frame_idx, point_idx)
    err = np.linalg.norm(pred - uv, axis=1)
    threshold = outlier_threshold if outlier_threshold is not None else 5 * np.nanmedian(err)
    per = np.zeros((C, F))
    np.add.at(per, (cam_idx, frame_idx), err / N)
    worst = per.max(0)
    keep = candidates[worst[candidates] <= threshold]
    if n_frames is not None and len(keep) > n_frames:
        keep = np.sort(np.random.default_rng(seed).choice(keep, n_frames, replace=False))
    # observations of the kept frames
    obs = np.argwhere(seen[:, keep])
    cam_idx = np.repeat(obs[:, 0], N)
    fpos = np.repeat(obs[:, 1], N)
    point_idx = np.tile(np.arange(N), len(obs))
    uv = corners[cam_idx, keep[fpos], point_idx]
    free_cams = [c for c in range(C)]
    n_cam = 14
    frame0 = board_poses[keep]

    def unpack(x):
        cams = cam0.copy()
        flat = x[: C * n_cam].reshape(C, n_cam)
        cams[:] = flat
        cams[root, 8:] = cam0[root, 8:]                                  # gauge: root camera = world
        return cams, x[C * n_cam:].reshape(-1, 6)

    def residuals(x):
        cams, frames = unpack(x)
        pred = _project_observations(cams, frames, object_points, cam_idx, fpos, point_idx)
        return (pred - uv).ravel()

    x0 = np.concatenate([cam0.ravel(), frame0.ravel()])
    m = len(uv) * 2
    sparsity = lil_matrix((m, len(x0)), dtype=int)
    rows = np.arange(len(uv))
    for k in range(n_cam):
        col = cam_idx * n_cam + k
        if k >= 8:
            mask = cam_idx != root
            sparsity[2 * rows[mask], col[mask]] = 1
            sparsity[2 * rows[mask] + 1, col[mask]] = 1
        else:
            sparsity[2 * rows, col] = 1
            sparsity[2 * rows + 1, col] = 1
    for k in range(6):
        col = C * n_cam + fpos * 6 + k
        sparsity[2 * rows, col] = 1
        sparsity[2 * rows + 1, col] = 1
    result = least_squares(residuals, x0, jac_sparsity=sparsity, loss="soft_l1", f_scale=1.0, x_scale="jac",
                           ftol=ftol, xtol=1e-10, method="trf", max_nfev=max_nfev)
    cams, frames = unpack(result.x)
    final = residuals(result.x).reshape(-1, 2)
    point_err = np.linalg.norm(final, axis=1)
    rms = np.array([np.sqrt(np.mean(point_err[cam_idx == c] ** 2)) if (cam_idx == c).any() else np.nan
                    for c in range(C)])
    new_intr = []
    for c in range(C):
        K = np.array([[cams[c, 0], 0, cams[c, 2]], [0, cams[c, 1], cams[c, 3]], [0, 0, 1.0]])
        new_intr.append((K, np.concatenate([cams[c, 4:8], [0.0]])))
    _ = free_cams, distort_normalized
    return BundleResult(cams[:, 8:14].copy(), new_intr, frames, keep, rms,
                        [point_err[cam_idx == c] for c in range(C)], bool(result.success), str(result.message))
