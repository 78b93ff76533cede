"""Realistic calibration footage: what a real chessboard recording in an IR-lit rig looks like.

Levels (``python -m mck synth --realism clean|realistic|hard``):

* ``clean`` — the original synthetic board videos (bright board on a grey background, mild blur and noise).
* ``realistic`` — an IR-dark arena; bright LED dot arrays (small grids of saturated dots) and their reflections in
  the floor, in view of several cameras; the board printed on a plate with a dark border, on a handle held by a hand
  (an ellipsoid); board poses more oblique (up to 65° incidence, so some cameras see 3–6 px squares along one
  direction) and moving faster; motion blur along the board's image motion; defocus per camera; sensor noise (read
  + shot); vignetting and a light gradient that moves; occasional glare on the plate; low board contrast; H.264 at a
  lab-like bitrate (≈ 0.15 bit per pixel).
* ``hard`` — the same, stronger (more blur, lower contrast, more glare, lower bitrate, up to 72° incidence).

Everything is whole-frame numpy/OpenCV (no per-pixel Python loops): the board, plate and handle are one textured
plane (``render.render_plane``), the hand one ellipsoid, the LEDs a bilinear splat + Gaussian blur, motion blur a
line kernel on the board's bounding box. The ground truth is exact: corners are where the board's corners project at
the frame's (mid-exposure) time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mck.geometry.camera import rodrigues
from mck.synth import board, render
from mck.synth.rig import ARENA_RADIUS, FLOOR_Z

LEVELS = ("clean", "realistic", "hard")


@dataclass(frozen=True)
class Realism:
    """Rendering settings of one realism level (grey levels 0–255, px, fractions)."""

    name: str
    keyframe_every: int = 6          # frames between key poses (smaller: faster board motion)
    max_incidence_deg: float = 55.0  # board normal vs line of sight, at key poses
    tilt_deg: float = 40.0
    leds: int = 0                    # LED dot arrays around the arena (and their floor reflections)
    plate: bool = False              # plate with border, handle, hand
    exposure: float = 0.0            # exposure / frame interval: motion blur = this × board image motion per frame
    defocus: tuple[float, float] = (0.8, 0.8)   # Gaussian σ px, per camera uniform in this range
    noise: float = 4.0               # read noise σ
    shot: float = 0.0                # shot noise σ = shot·√grey
    vignette: float = 0.0            # relative fall-off at the image corners
    board_levels: tuple[float, float] = (board.BLACK, board.WHITE)   # printed black / white under the IR light
    glare: float = 0.0               # probability of a glare spot on the plate per frame
    bits_per_pixel: float | None = None   # H.264 bitrate / (width·height·fps); None: crf 17


CLEAN = Realism("clean")
REALISTIC = Realism("realistic", keyframe_every=10, max_incidence_deg=65.0, tilt_deg=50.0, leds=5, plate=True,
                    exposure=0.15, defocus=(0.6, 1.1), noise=3.0, shot=0.35, vignette=0.45,
                    board_levels=(45.0, 170.0), glare=0.25, bits_per_pixel=0.15)
HARD = Realism("hard", keyframe_every=7, max_incidence_deg=72.0, tilt_deg=60.0, leds=8, plate=True, exposure=0.45,
               defocus=(0.9, 1.5), noise=4.5, shot=0.5, vignette=0.6, board_levels=(55.0, 145.0), glare=0.5,
               bits_per_pixel=0.08)


def level(name: str) -> Realism:
    """The settings of a realism level by name (``clean``, ``realistic``, ``hard``)."""
    table = {r.name: r for r in (CLEAN, REALISTIC, HARD)}
    if name not in table:
        raise ValueError(f"unknown realism level {name!r} (use one of {', '.join(LEVELS)})")
    return table[name]


# ---------------------------------------------------------------------------------------------------------------
# the plate: the printed sheet on a plate with a dark border, on a handle (board coordinates, mm)

PLATE_MARGIN = 10.0     # plate beyond the printed sheet
BORDER = 5.0            # dark frame of the plate
HANDLE = (16.0, 110.0)  # width, length below the plate


def plate_extent(board_shape=board.BOARD_SHAPE, square: float = board.SQUARE):
    """(x0, x1, y0, y1) mm of the plate (without the handle)."""
    x0, x1, y0, y1 = board.paper_extent(board_shape, square)
    return x0 - PLATE_MARGIN, x1 + PLATE_MARGIN, y0 - PLATE_MARGIN, y1 + PLATE_MARGIN


def plate_texture(levels: tuple[float, float], board_shape=board.BOARD_SHAPE, square: float = board.SQUARE):
    """``texture(x, y)`` of sheet + plate + handle: the printed sheet with black/white at ``levels``, a light plate
    with a dark border around it, a dark handle below; NaN elsewhere."""
    black, white = levels
    px0, px1, py0, py1 = plate_extent(board_shape, square)
    cx = 0.5 * (board_shape[0] - 1) * square

    def texture(x, y):
        paper = board.texture(x, y, board_shape, square)
        paper = black + (paper - board.BLACK) * (white - black) / (board.WHITE - board.BLACK)
        in_plate = (x > px0) & (x < px1) & (y > py0) & (y < py1)
        inner = (x > px0 + BORDER) & (x < px1 - BORDER) & (y > py0 + BORDER) & (y < py1 - BORDER)
        plate = np.where(inner, 0.75 * white, 0.25 * white)
        handle = (np.abs(x - cx) < HANDLE[0] / 2) & (y >= py1) & (y < py1 + HANDLE[1])
        out = np.where(np.isfinite(paper), paper, np.where(in_plate, plate, np.nan))
        return np.where(handle & ~in_plate, 0.3 * white, out)

    extent = (px0, px1, py0, py1 + HANDLE[1])
    return texture, extent


# ---------------------------------------------------------------------------------------------------------------
# LED arrays


def led_points(n_arrays: int, seed: int) -> np.ndarray:
    """World positions (D, 3) mm of the LED dots: ``n_arrays`` grids of 3 × 4 dots (5 mm apart) on a ring just
    outside the arena, facing its centre, plus their mirror images in the floor (the second half)."""
    if n_arrays <= 0:
        return np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    dots = []
    for a in range(n_arrays):
        phi = 2 * np.pi * (a + rng.uniform(-0.3, 0.3)) / n_arrays
        radius = ARENA_RADIUS + rng.uniform(20, 90)
        center = np.array([radius * np.cos(phi), radius * np.sin(phi), FLOOR_Z - rng.uniform(15, 120)])
        tangent = np.array([-np.sin(phi), np.cos(phi), 0.0])
        up = np.array([0.0, 0.0, -1.0])
        r, c = np.mgrid[0:3, 0:4]
        dots.append(center + 5.0 * ((c.ravel() - 1.5)[:, None] * tangent + (r.ravel() - 1.0)[:, None] * up))
    dots = np.concatenate(dots)
    mirror = dots.copy()
    mirror[:, 2] = 2 * FLOOR_Z - mirror[:, 2]
    return np.concatenate([dots, mirror])


def splat_leds(cam: render.CameraRays, points: np.ndarray, shape: tuple[int, int], sigma: float = 1.0,
               peak: float = 320.0, reflection: float = 0.35) -> np.ndarray:
    """(H, W) float32 additive image of the LED dots ``points`` (D, 3) (second half: reflections, dimmer):
    Gaussian spots of ``sigma`` px whose peak (before clipping) is ``peak`` grey levels."""
    height, width = shape
    out = np.zeros((height + 2, width + 2), np.float32)
    if not len(points):
        return out[1:-1, 1:-1]
    z = cam.to_camera(points)[:, 2]
    uv = cam.project(points)
    amp = np.where(np.arange(len(points)) < len(points) // 2, 1.0, reflection) * peak * 2 * np.pi * sigma ** 2
    ok = (z > 10) & np.isfinite(uv).all(1) & (uv[:, 0] > 0) & (uv[:, 0] < width - 1) & (uv[:, 1] > 0) \
        & (uv[:, 1] < height - 1)
    uv, amp = uv[ok] + 1.0, amp[ok]
    i0 = np.floor(uv).astype(int)
    f = uv - i0
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):                 # bilinear splat, 4 taps
        w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
        np.add.at(out, (i0[:, 1] + dy, i0[:, 0] + dx), (amp * w).astype(np.float32))
    return cv2.GaussianBlur(out, (0, 0), sigma)[1:-1, 1:-1]


# ---------------------------------------------------------------------------------------------------------------
# motion blur


def line_kernel(dx: float, dy: float) -> np.ndarray | None:
    """Normalised line kernel of the displacement (dx, dy) px centred on the origin; None when shorter than 1 px."""
    length = float(np.hypot(dx, dy))
    if length < 1.0:
        return None
    half = int(np.ceil(length / 2)) + 1
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    n = max(int(np.ceil(length * 3)), 2)
    s = np.linspace(-0.5, 0.5, n)
    xs, ys = half + s * dx, half + s * dy
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for ox, oy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (np.clip(y0 + oy, 0, 2 * half), np.clip(x0 + ox, 0, 2 * half)), w.astype(np.float32))
    return k / k.sum()


def motion_blur(image: np.ndarray, box: tuple[int, int, int, int], dx: float, dy: float) -> np.ndarray:
    """``image`` with the pixel box (u0, u1, v0, v1) blurred along (dx, dy) px (in place; returned)."""
    k = line_kernel(dx, dy)
    u0, u1, v0, v1 = box
    if k is None or u1 <= u0 or v1 <= v0:
        return image
    image[v0:v1, u0:u1] = cv2.filter2D(image[v0:v1, u0:u1], -1, k, borderType=cv2.BORDER_REFLECT)
    return image


# ---------------------------------------------------------------------------------------------------------------
# one camera's frames


def background(size: tuple[int, int], seed: int, camera: str) -> np.ndarray:
    """IR-dark arena (H, W) float32: grey ≈ 10–30 with soft structure; the floor a little brighter seen from below."""
    rng = np.random.default_rng(seed)
    width, height = size
    texture = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), 0.02 * width) * 60
    base = 18.0 if camera != "bottom" else 26.0
    return np.clip(base + texture, 4, 45).astype(np.float32)


def light_field(size: tuple[int, int], vignette: float, t: int) -> np.ndarray:
    """Multiplicative illumination (H, W) float32: radial vignetting and an IR-lamp gradient turning with ``t``."""
    width, height = size
    gx = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    gy = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    r2 = (gx * gx + gy * gy) * 2.0
    angle = 0.17 * t
    gradient = 1.0 + 0.3 * (np.float32(np.cos(angle)) * gx + np.float32(np.sin(angle)) * gy)
    return ((1.0 - vignette * r2) * gradient).astype(np.float32)


def board_frames(cam: render.CameraRays, camera: str, rvecs: np.ndarray, tvecs: np.ndarray, settings: Realism,
                 seed: int):
    """Yield the uint8 (H, W) frames of one camera's calibration video at realism ``settings`` (not ``clean``)."""
    rng = np.random.default_rng(seed)
    width, height = cam.size
    bg = background(cam.size, seed + 7, camera)
    texture, extent = plate_texture(settings.board_levels)
    rots = rodrigues(rvecs)
    leds = splat_leds(cam, led_points(settings.leds, 4242), (height, width))    # world-fixed: same every frame
    defocus = float(rng.uniform(*settings.defocus))
    bank = rng.normal(0, 1, (8, height, width)).astype(np.float32)
    px0, px1, py0, py1 = extent
    outline = np.array([[px0, py0, 0], [px1, py0, 0], [px1, py1, 0], [px0, py1, 0]], float)
    cx = 0.5 * (board.BOARD_SHAPE[0] - 1) * board.SQUARE
    plate_bottom = plate_extent()[3]
    T = len(rvecs)
    for t in range(T):
        R, o = rots[t], tvecs[t]
        image = render.render_plane(cam, o, R[:, 0], R[:, 1], texture, bg, supersample=2, extent=extent)
        if settings.plate:                                       # the hand around the handle
            grip = plate_bottom + (45.0 if settings.name == "hard" and t % 5 == 0 else 75.0)
            centre = R @ np.array([cx, grip, 0.0]) + o
            axes = np.stack([R[:, 0] * 30.0, R[:, 1] * 45.0, R[:, 2] * 22.0])
            image, _ = render.render_ellipsoids(cam, centre[None], axes[None], np.array([0.9 * settings.board_levels[1]]),
                                                image)
        covered = image != bg                                    # the board and the hand hide the LEDs behind
        # motion blur along the board's image motion during the exposure
        if settings.exposure > 0:
            world = outline @ R.T + o
            if (cam.to_camera(world)[:, 2] > 10).all():
                uv = cam.project(world)
                a, b = max(t - 1, 0), min(t + 1, T - 1)
                centre_of = lambda k: cam.project((rots[k] @ np.array([cx, 3 * board.SQUARE, 0]) + tvecs[k])[None])[0]  # noqa: E731
                motion = (centre_of(b) - centre_of(a)) / max(b - a, 1) * settings.exposure
                pad = int(np.ceil(np.abs(motion).max())) + 4
                u0, v0 = np.clip(np.floor(uv.min(0)).astype(int) - pad, 0, [width, height])
                u1, v1 = np.clip(np.ceil(uv.max(0)).astype(int) + pad, 0, [width, height])
                image = motion_blur(image, (u0, u1, v0, v1), motion[0], motion[1])
        image = image + np.where(covered, np.float32(0), leds)
        image *= light_field(cam.size, settings.vignette, t)
        if settings.plate and rng.random() < settings.glare:   # specular glare somewhere on the plate
            gx, gy = rng.uniform(px0, px1), rng.uniform(py0, py1 - 20)
            p = R @ np.array([gx, gy, 0.0]) + o
            if cam.to_camera(p[None])[0, 2] > 10:
                u, v = cam.project(p[None])[0]
                s = float(rng.uniform(4, 14)) * width / 640
                yy, xx = np.ogrid[0:height, 0:width]
                image += float(rng.uniform(60, 140)) * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * s * s)).astype(
                    np.float32)
        if defocus > 0:
            image = cv2.GaussianBlur(image, (0, 0), defocus)
        sd = settings.noise + settings.shot * np.sqrt(np.maximum(image, 0))
        image = image + sd * bank[rng.integers(len(bank))]
        yield np.clip(image, 0, 255).astype(np.uint8)


def bitrate(settings: Realism, size: tuple[int, int], fps: float) -> int | None:
    """H.264 bit rate (bit/s) of a level at this frame size, or None (constant quality)."""
    if settings.bits_per_pixel is None:
        return None
    return int(settings.bits_per_pixel * size[0] * size[1] * fps)
