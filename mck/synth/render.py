"""Grey-level rendering by ray casting, with the cameras' real distortion: ellipsoids with a z-buffer (the animal)
and a textured plane (the chessboard). Vectorized over pixels; only pixels near each primitive are cast."""

from __future__ import annotations

import numpy as np
import cv2

from mck.geometry.camera import project_camera, rodrigues, undistort_points


class CameraRays:
    """Per camera: the ray through every pixel centre, ``(H, W, 3)`` with z = 1 (camera frame)."""

    def __init__(self, K: np.ndarray, dist: np.ndarray, extrinsic: np.ndarray, size: tuple[int, int]):
        width, height = size
        self.K, self.dist, self.size = K, dist, size
        self.R = rodrigues(extrinsic[:3])
        self.t = extrinsic[3:]
        self.rvec = extrinsic[:3]
        u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
        ideal = undistort_points(np.stack([u, v], -1), K, dist, iterations=20)
        x = (ideal[..., 0] - K[0, 2]) / K[0, 0]
        y = (ideal[..., 1] - K[1, 2]) / K[1, 1]
        self.rays = np.stack([x, y, np.ones_like(x)], -1)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return points @ self.R.T + self.t

    def project(self, points: np.ndarray) -> np.ndarray:
        return project_camera(points, self.rvec, self.t, self.K, self.dist)


def render_ellipsoids(cam: CameraRays, centers: np.ndarray, axes: np.ndarray, albedo: np.ndarray,
                      background: np.ndarray, margin: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Render ellipsoids (centers (P, 3), axes (P, 3, 3) rows = semi-axes, mm, world) over ``background`` (H, W)
    float. Returns (image (H, W) float, depth (H, W) mm camera z, inf where empty)."""
    height, width = background.shape
    image = background.copy()
    depth = np.full((height, width), np.inf)
    c_cam = cam.to_camera(centers)
    a_cam = axes @ cam.R.T
    extent = np.linalg.norm(a_cam, axis=1).max(1)
    for p in range(len(centers)):  # a few dozen primitives, each on its own small pixel box
        if c_cam[p, 2] - extent[p] <= 1.0:
            continue
        box = _pixel_box(cam, c_cam[p], extent[p], width, height, margin)
        if box is None:
            continue
        u0, u1, v0, v1 = box
        rays = cam.rays[v0:v1, u0:u1]
        inv = np.linalg.inv(a_cam[p].T)                     # maps camera-frame offsets to the unit sphere
        d = rays @ inv.T
        c = inv @ c_cam[p]
        a = np.sum(d * d, -1)
        b = d @ c
        disc = b * b - a * (c @ c - 1.0)
        hit = disc > 0
        t = np.where(hit, (b - np.sqrt(np.where(hit, disc, 0))) / a, np.inf)
        closer = hit & (t > 0) & (t < depth[v0:v1, u0:u1])
        if not closer.any():
            continue
        y = np.where(closer[..., None], t[..., None] * d - c, 0.0)   # point on the unit sphere
        normal = y @ inv                                      # gradient direction in the camera frame
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
        view = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
        shade = 0.45 + 0.55 * np.abs(np.sum(normal * view, -1))
        region = image[v0:v1, u0:u1]
        region[closer] = albedo[p] * shade[closer]
        depth[v0:v1, u0:u1][closer] = t[closer]
    return image, depth


def _pixel_box(cam: CameraRays, center_cam: np.ndarray, extent: float, width: int, height: int, margin: int):
    corners = center_cam + extent * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    corners[:, 2] = np.maximum(corners[:, 2], 1.0)
    xy = corners[:, :2] / corners[:, 2:]
    # distortion moves points by a few pixels at most: widen the box instead of distorting the corners
    uv = xy * np.array([cam.K[0, 0], cam.K[1, 1]]) + cam.K[:2, 2]
    pad = margin + 0.03 * max(width, height)
    u0, v0 = np.floor(uv.min(0) - pad).astype(int)
    u1, v1 = np.ceil(uv.max(0) + pad).astype(int)
    u0, v0 = max(u0, 0), max(v0, 0)
    u1, v1 = min(u1, width), min(v1, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, u1, v0, v1


def render_plane(cam: CameraRays, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray, texture, background,
                 supersample: int = 3) -> np.ndarray:
    """Render a textured plane (world ``origin`` + x·ex + y·ey, mm; ``texture(x, y)`` → grey or NaN outside) over
    ``background`` (H, W) with ``supersample``² samples per pixel (anti-aliasing)."""
    height, width = background.shape
    o = cam.to_camera(origin)
    ax = ex @ cam.R.T
    ay = ey @ cam.R.T
    normal = np.cross(ax, ay)
    # sub-pixel ray offsets: rays are affine in the normalized coordinates locally; jitter in pixel units
    image = np.zeros((height, width))
    count = np.zeros((height, width))
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    inv_f = np.array([1.0 / cam.K[0, 0], 1.0 / cam.K[1, 1]])
    for du in offsets:
        for dv in offsets:
            rays = cam.rays.copy()
            rays[..., 0] += du * inv_f[0]
            rays[..., 1] += dv * inv_f[1]
            denom = rays @ normal
            with np.errstate(divide="ignore", invalid="ignore"):
                s = (o @ normal) / denom
            point = s[..., None] * rays - o
            # coordinates in the plane basis (ex, ey orthogonal)
            x = point @ ax / (ax @ ax)
            y = point @ ay / (ay @ ay)
            value = texture(x, y)
            valid = np.isfinite(value) & (s > 0)
            image += np.where(valid, value, background)
            count += 1
    return image / count


def finish(image: np.ndarray, rng: np.random.Generator, blur: float = 0.6, noise: float = 3.0,
           noise_bank: np.ndarray | None = None) -> np.ndarray:
    """Blur, sensor noise and clipping → uint8."""
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    if noise_bank is not None:
        image = image + noise_bank[rng.integers(len(noise_bank))]
    elif noise > 0:
        image = image + rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
