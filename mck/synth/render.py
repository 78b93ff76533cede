"""Grey-level rendering by ray casting, with the cameras' real distortion: ellipsoids with a z-buffer (the animal)
and a textured plane (the chessboard).

Every pixel's ray is exact (the pixel grid undistorted once per camera). Work is restricted to the pixels a
primitive can cover: the bounding box of its silhouette (analytic for an ellipsoid, from the projected outline for
the board), distorted and padded by 2 px. Per pixel the ellipsoid intersection is a quadratic form in the ray's
normalized coordinates (x, y, 1) — scalar fields, float32 — so a frame costs a few milliseconds.
"""

from __future__ import annotations

import cv2
import numpy as np

from mck.geometry.camera import distort_normalized, project_camera, rodrigues, undistort_points

_PAD_PX = 2.0


class CameraRays:
    """Per camera: the ray (x, y, 1) through every pixel centre (camera frame), stored as ``x``, ``y`` (H, W)
    float32 (the ellipsoids), ``x64``, ``y64`` float64 (the board's texture edges) and ``inv_len`` = 1 / |ray|."""

    def __init__(self, K: np.ndarray, dist: np.ndarray, extrinsic: np.ndarray, size: tuple[int, int]):
        width, height = size
        self.K, self.dist, self.size = np.asarray(K, float), np.asarray(dist, float), size
        self.R = rodrigues(extrinsic[:3])
        self.t = np.asarray(extrinsic[3:], float)
        self.rvec = extrinsic[:3]
        u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
        ideal = undistort_points(np.stack([u, v], -1), K, dist, iterations=20)
        x = (ideal[..., 0] - K[0, 2]) / K[0, 0]
        y = (ideal[..., 1] - K[1, 2]) / K[1, 1]
        self.x64, self.y64 = x, y
        self.x = x.astype(np.float32)
        self.y = y.astype(np.float32)
        self.inv_len = (1.0 / np.sqrt(x * x + y * y + 1.0)).astype(np.float32)

    @property
    def rays(self) -> np.ndarray:
        """(H, W, 3) rays with z = 1 (float64), for callers that want them whole."""
        return np.stack([self.x64, self.y64, np.ones_like(self.x64)], -1)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return points @ self.R.T + self.t

    def project(self, points: np.ndarray) -> np.ndarray:
        return project_camera(points, self.rvec, self.t, self.K, self.dist)

    def pixels(self, xy: np.ndarray) -> np.ndarray:
        """Normalized camera-frame points (..., 2) → distorted pixels (..., 2)."""
        return distort_normalized(xy, self.dist) @ self.K[:2, :2].T + self.K[:2, 2]

    def box(self, x0: float, x1: float, y0: float, y1: float):
        """Pixel box (u0, u1, v0, v1) (half-open, clipped) holding the distorted image of the normalized box
        [x0, x1] × [y0, y1], or None when empty."""
        boxes, ok = self.boxes(np.array([[x0, x1, y0, y1]], float))
        return tuple(int(v) for v in boxes[0]) if ok[0] else None

    def boxes(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel boxes (B, 4) = (u0, u1, v0, v1) (half-open, clipped to the image) holding the distorted images of
        normalized boxes ``bounds`` (B, 4) = (x0, x1, y0, y1), and whether each is non-empty (B,). Each edge is
        sampled at 9 points plus the point nearest the optical axis (radial distortion bends edges outwards
        there), then padded by 2 px."""
        x0, x1, y0, y1 = (bounds[:, i:i + 1] for i in range(4))
        s = np.linspace(0.0, 1.0, 9)[None]
        xs, ys = x0 + (x1 - x0) * s, y0 + (y1 - y0) * s
        cx, cy = np.clip(0.0, x0, x1), np.clip(0.0, y0, y1)
        one = np.ones_like(s)
        px = np.concatenate([xs, xs, x0 * one, x1 * one, cx, cx, x0, x1], 1)
        py = np.concatenate([y0 * one, y1 * one, ys, ys, y0, y1, cy, cy], 1)
        uv = self.pixels(np.stack([px, py], -1))                        # (B, S, 2)
        lo = np.floor(uv.min(1) - _PAD_PX)
        hi = np.ceil(uv.max(1) + _PAD_PX) + 1
        width, height = self.size
        finite = np.isfinite(lo).all(1) & np.isfinite(hi).all(1)
        lo = np.where(finite[:, None], lo, 0)
        hi = np.where(finite[:, None], hi, [width, height])
        u0 = np.clip(lo[:, 0], 0, width).astype(int)
        v0 = np.clip(lo[:, 1], 0, height).astype(int)
        u1 = np.clip(hi[:, 0], 0, width).astype(int)
        v1 = np.clip(hi[:, 1], 0, height).astype(int)
        return np.stack([u0, u1, v0, v1], 1), (u0 < u1) & (v0 < v1)


def ellipsoid_boxes(cam: CameraRays, centers: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel boxes (P, 4) = (u0, u1, v0, v1) of ellipsoids (camera-frame ``centers`` (P, 3), ``axes`` (P, 3, 3)
    rows = semi-axes) and whether each is drawable (P,): the silhouette's tangent lines from its dual conic
    ``A Aᵀ − c cᵀ`` in normalized coordinates, then distortion. Not drawable: empty box or an ellipsoid that reaches
    behind the camera."""
    C = np.swapaxes(axes, 1, 2) @ axes - centers[:, :, None] * centers[:, None, :]
    c22 = C[:, 2, 2]
    front = c22 < 0                                     # the camera is outside the ellipsoid's tangent cone
    c22 = np.where(front, c22, -1.0)
    bounds = []
    for i in (0, 1):                                   # x = s: line (1, 0, −s): C00 − 2 s C02 + s² C22 = 0
        root = np.sqrt(np.maximum(C[:, i, 2] ** 2 - C[:, i, i] * c22, 0.0))
        a, b = (C[:, i, 2] + root) / c22, (C[:, i, 2] - root) / c22
        bounds += [np.minimum(a, b), np.maximum(a, b)]
    boxes, ok = cam.boxes(np.stack(bounds, 1))
    return boxes, ok & front


def render_ellipsoids(cam: CameraRays, centers: np.ndarray, axes: np.ndarray, albedo: np.ndarray,
                      background: np.ndarray, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render ellipsoids (centers (P, 3), axes (P, 3, 3) rows = semi-axes, mm, world) over ``background`` (H, W).
    Returns (image (H, W) float32, depth (H, W) float32 mm camera z, inf where empty). Lambert-like shading
    ``0.45 + 0.55 |n·v|``. ``margin`` is accepted for compatibility (boxes are exact)."""
    height, width = background.shape
    image = background.astype(np.float32, copy=True)
    depth = np.full((height, width), np.inf, dtype=np.float32)
    c_cam = cam.to_camera(centers)
    a_cam = axes @ cam.R.T                                  # rows: semi-axes in the camera frame
    extent = np.linalg.norm(a_cam, axis=1).max(1)
    boxes, drawable = ellipsoid_boxes(cam, c_cam, a_cam)
    drawable &= c_cam[:, 2] - extent > 1.0
    for p in np.flatnonzero(drawable):  # a few dozen primitives, each on its own small pixel box
        u0, u1, v0, v1 = boxes[p]
        x, y = cam.x[v0:v1, u0:u1], cam.y[v0:v1, u0:u1]
        M = np.linalg.inv(a_cam[p].T)                       # camera-frame offsets → unit sphere
        Q = M.T @ M                                          # ellipsoid: (p − c)ᵀ Q (p − c) = 1
        g = Q @ c_cam[p]
        k = float(c_cam[p] @ g - 1.0)
        q0 = Q[0, 0] * x + Q[0, 1] * y + Q[0, 2]             # Q r, r = (x, y, 1)
        q1 = Q[1, 0] * x + Q[1, 1] * y + Q[1, 2]
        q2 = Q[2, 0] * x + Q[2, 1] * y + Q[2, 2]
        a = q0 * x + q1 * y + q2                             # rᵀ Q r
        b = g[0] * x + g[1] * y + g[2]                       # rᵀ Q c
        disc = b * b - a * k
        zbuf = depth[v0:v1, u0:u1]
        with np.errstate(invalid="ignore"):
            s = np.sqrt(disc)
            t = (b - s) / a                                  # camera z of the nearer intersection (ray z = 1)
            closer = (disc > 0) & (t > 0) & (t < zbuf)
        if not closer.any():
            continue
        t_hit, s_hit = t[closer], s[closer]
        n0 = t_hit * q0[closer] - g[0]                       # surface normal ∝ Q (p − c)
        n1 = t_hit * q1[closer] - g[1]
        n2 = t_hit * q2[closer] - g[2]
        # |n · r| = |t a − b| = s at the hit
        cosine = s_hit * cam.inv_len[v0:v1, u0:u1][closer] / np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
        image[v0:v1, u0:u1][closer] = albedo[p] * (0.45 + 0.55 * np.minimum(cosine, 1.0))
        zbuf[closer] = t_hit
    return image, depth


def render_plane(cam: CameraRays, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray, texture, background,
                 supersample: int = 3, extent: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Render a textured plane (world ``origin`` + x·ex + y·ey, mm; ``texture(x, y)`` → grey or NaN outside) over
    ``background`` (H, W) with ``supersample``² samples per pixel (anti-aliasing). ``extent`` = (x0, x1, y0, y1)
    mm bounds the textured area, so that only the pixels it covers are cast (whole image when None)."""
    height, width = background.shape
    o = cam.to_camera(np.asarray(origin, float))
    ax = np.asarray(ex, float) @ cam.R.T
    ay = np.asarray(ey, float) @ cam.R.T
    image = background.astype(np.float32, copy=True)
    box = (0, width, 0, height)
    if extent is not None:
        x0, x1, y0, y1 = extent
        s = np.linspace(0.0, 1.0, 17)
        outline = np.concatenate([np.stack([x0 + (x1 - x0) * s, np.full(17, y0)], -1),
                                  np.stack([x0 + (x1 - x0) * s, np.full(17, y1)], -1),
                                  np.stack([np.full(17, x0), y0 + (y1 - y0) * s], -1),
                                  np.stack([np.full(17, x1), y0 + (y1 - y0) * s], -1)])
        pts = o + outline[:, :1] * ax + outline[:, 1:] * ay
        if (pts[:, 2] <= 1.0).any():
            if (pts[:, 2] <= 1.0).all():
                return image
        else:
            xy = pts[:, :2] / pts[:, 2:]
            box = cam.box(xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max())
            if box is None:
                return image
    u0, u1, v0, v1 = box
    X, Y = cam.x64[v0:v1, u0:u1], cam.y64[v0:v1, u0:u1]
    bg = image[v0:v1, u0:u1].astype(float)
    normal = np.cross(ax, ay)
    on = o @ normal
    acc = np.zeros(X.shape)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    inv_f = np.array([1.0 / cam.K[0, 0], 1.0 / cam.K[1, 1]])
    for du in offsets:
        for dv in offsets:
            rx = X + du * inv_f[0]
            ry = Y + dv * inv_f[1]
            denom = rx * normal[0] + ry * normal[1] + normal[2]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = on / denom
                # plane coordinates of the hit (ex, ey orthogonal)
                px, py, pz = s * rx - o[0], s * ry - o[1], s - o[2]
                x = (px * ax[0] + py * ax[1] + pz * ax[2]) / (ax @ ax)
                y = (px * ay[0] + py * ay[1] + pz * ay[2]) / (ay @ ay)
                value = texture(x, y)
            valid = np.isfinite(value) & (s > 0)
            acc += np.where(valid, value, bg)
    image[v0:v1, u0:u1] = acc / supersample ** 2
    return image


def finish(image: np.ndarray, rng: np.random.Generator, blur: float = 0.6, noise: float = 3.0,
           noise_bank: np.ndarray | None = None) -> np.ndarray:
    """Blur, sensor noise and clipping → uint8."""
    image = np.asarray(image, dtype=np.float32)
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    if noise_bank is not None:
        image = image + noise_bank[rng.integers(len(noise_bank))]
    elif noise > 0:
        image = image + rng.normal(0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
