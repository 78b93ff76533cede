"""The camera model: Rodrigues rotations, distortion, projection and undistortion (OpenCV-compatible)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

Intrinsics = Sequence[tuple[np.ndarray, np.ndarray]]


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation vectors ``(..., 3)`` (axis × angle, rad) → rotation matrices ``(..., 3, 3)``."""
    rvec = np.asarray(rvec, dtype=float)
    theta = np.linalg.norm(rvec, axis=-1)[..., None, None]
    small = theta < 1e-12
    safe = np.where(small, 1.0, theta)
    k = rvec[..., None, :] / safe
    kx, ky, kz = k[..., 0, 0], k[..., 0, 1], k[..., 0, 2]
    zero = np.zeros_like(kx)
    cross = np.stack([np.stack([zero, -kz, ky], -1), np.stack([kz, zero, -kx], -1),
                      np.stack([-ky, kx, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), cross.shape)
    outer = np.swapaxes(k, -1, -2) @ k
    rot = np.cos(theta) * eye + (1 - np.cos(theta)) * outer + np.sin(theta) * cross
    return np.where(small, eye, rot)


def rotation_to_rvec(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` → Rodrigues vectors ``(..., 3)`` (angle in [0, π])."""
    rotation = np.asarray(rotation, dtype=float)
    flat = rotation.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 3))
    for i, r in enumerate(flat):  # a handful of cameras, never per frame
        cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
        skew = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])   # 2 sin θ · axis
        sin = np.linalg.norm(skew) / 2
        theta = np.arctan2(sin, cos)  # accurate near 0 too, where arccos(cos) rounds small angles to 0
        if sin == 0.0 and cos > 0:
            out[i] = 0.0
        elif np.pi - theta < 1e-6:
            # near π: axis from the symmetric part
            m = (r + np.eye(3)) / 2
            axis = np.sqrt(np.clip(np.diag(m), 0, None))
            j = int(np.argmax(axis))
            axis = m[j] / np.sqrt(m[j, j])
            out[i] = axis / np.linalg.norm(axis) * theta
        else:
            out[i] = skew / (2 * sin) * theta
    return out.reshape(rotation.shape[:-2] + (3,))


def distort_normalized(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Apply OpenCV distortion ``(k1, k2, p1, p2, k3)`` to normalized image points ``(..., 2)``."""
    k1, k2, p1, p2, k3 = (np.asarray(dist, dtype=float).ravel().tolist() + [0.0] * 5)[:5]
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def project_camera(points: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, K: np.ndarray,
                   dist: np.ndarray | None) -> np.ndarray:
    """Project world points ``(..., 3)`` mm into one camera → distorted pixels ``(..., 2)`` (= cv2.projectPoints)."""
    cam = points @ rodrigues(rvec).T + np.asarray(tvec, dtype=float)
    xy = cam[..., :2] / cam[..., 2:3]
    if dist is not None:
        xy = distort_normalized(xy, dist)
    return xy @ np.asarray(K, dtype=float)[:2, :2].T + np.asarray(K, dtype=float)[:2, 2]


def project(points: np.ndarray, extrinsics: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Project world points ``(frames, keypoints, 3)`` mm into every camera → ``(frames, cameras, keypoints, 2)``
    distorted pixels. NaN points stay NaN."""
    points = np.asarray(points, dtype=float)
    out = [project_camera(points, ext[:3], ext[3:], K, dist) for ext, (K, dist) in zip(np.asarray(extrinsics),
                                                                                    intrinsics)]
    return np.stack(out, axis=-3)


def undistort_points(uv: np.ndarray, K: np.ndarray, dist: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Distorted pixels ``(..., 2)`` → ideal (undistorted) pixels, same shape, NaN stays NaN.

    The fixed-point iteration of OpenCV's ``undistortPoints(pts, K, dist, P=K)`` (5 iterations, docs/algorithms.md §A.7).
    """
    K = np.asarray(K, dtype=float)
    k1, k2, p1, p2, k3 = (np.asarray(dist, dtype=float).ravel().tolist() + [0.0] * 5)[:5]
    uv = np.asarray(uv, dtype=float)
    x0 = (uv[..., 0] - K[0, 2]) / K[0, 0]
    y0 = (uv[..., 1] - K[1, 2]) / K[1, 1]
    x, y = x0, y0
    for _ in range(iterations):
        r2 = x * x + y * y
        icdist = 1.0 / (1 + ((k3 * r2 + k2) * r2 + k1) * r2)
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (x0 - dx) * icdist
        y = (y0 - dy) * icdist
    return np.stack([x * K[0, 0] + K[0, 2], y * K[1, 1] + K[1, 2]], axis=-1)


def projection_matrices(extrinsics: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """``P_c = K_c [R_c | t_c]`` ``(cameras, 3, 4)``: homogeneous world mm → homogeneous undistorted pixels."""
    extrinsics = np.asarray(extrinsics, dtype=float)
    rot = rodrigues(extrinsics[:, :3])
    rt = np.concatenate([rot, extrinsics[:, 3:, None]], axis=-1)
    Ks = np.stack([np.asarray(K, dtype=float) for K, _ in intrinsics])
    return Ks @ rt
