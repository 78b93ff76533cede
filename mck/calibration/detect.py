"""Chessboard detection with the lab's anchor-dot ordering (docs/algorithms.md §A.2), fast and verified.

Per frame (``detect_chessboard_scored``):

1. **Locate** the board: chessboard X-corners are saddle points of the (slightly blurred) image, where the Hessian
   determinant is strongly negative. Peaks of ``−det H`` above a threshold relative to the frame's strongest one (and
   to the frame's own noise level) are clustered; a frame without a cluster of at least 12 saddle points has no
   board (a few milliseconds, where OpenCV's detector would search the whole frame).
2. **Detect** on the crop around the cluster, upscaled so that the corner spacing is ≥ ``target_square_px``
   (small boards: squares of 4–6 px need 3×): OpenCV's classic ``findChessboardCorners`` (adaptive threshold,
   normalisation, fast check). ``thorough=True`` adds the full classic search and the sector-based
   ``findChessboardCornersSB`` (slower; rarely needed).
3. **Refine** the corners with ``cornerSubPix`` on the full-resolution image (half-window ≈ 0.45 square: the
   largest that stays clear of the neighbouring corners; figures: docs/algorithms.md, Measured figures).
4. **Verify** the grid, so that a wrong detection never reaches the bundle adjustment: the 35 corners must fit a
   plane homography (max residual < ``max_grid_residual`` squares + 0.8 px — a corner that wandered fails); the
   squares the homography predicts must alternate dark/light with the expected parity, and the ring of cells just
   outside the checker area must be light (the printed margin) — a grid shifted by a row, or a wrong grid on a
   textured background, fails.
5. **Order** the corners by the anchor dot (docs/algorithms.md §A.2): point 0 is the corner nearest the dot. An ambiguous
   dot (best − second score < ``match_score_min_diff``, or best < ``min_anchor_score``) rejects the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

TEMPLATE_SIZE = 40
DETECTOR_VERSION = 3          # bump when detections change; cached detections of another version are redone


def _template() -> np.ndarray:
    t = np.full((TEMPLATE_SIZE, TEMPLATE_SIZE), 255, np.uint8)
    cv2.circle(t, (10, 10), 10, 0, -1)
    return t


_TEMPLATE = _template().astype(np.float64)
_CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
_CLASSIC = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
_SUBPIX = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.001)


def detect_chessboard(image: np.ndarray, board_shape: tuple[int, int] = (5, 7), match_score_min_diff: float = 0.1,
                      **kwargs) -> np.ndarray | None:
    """Corners ``(cols·rows, 2)`` float px in the board's row-major order fixed by the anchor dot, or None.

    ``image``: grey (H, W) or BGR uint8. ``board_shape`` = (columns, rows) of internal corners.
    """
    result = detect_chessboard_scored(image, board_shape, match_score_min_diff, **kwargs)
    return None if result is None else result[0]


def detect_chessboard_scored(image: np.ndarray, board_shape=(5, 7), match_score_min_diff: float = 0.1,
                             max_grid_residual: float = 0.1, min_anchor_score: float = 0.5,
                             target_square_px: float = 14.0, thorough: bool = False, subpix_window: float = 0.45):
    """Like ``detect_chessboard`` but returns ``(corners (N, 2) float64, anchor scores sorted descending (4,))``
    or None. ``max_grid_residual``: largest distance (in squares) of a corner from the best plane homography;
    ``subpix_window``: half-size of the ``cornerSubPix`` window in squares (2–9 px)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    board_shape = (int(board_shape[0]), int(board_shape[1]))
    for corners in _candidates(gray, board_shape, target_square_px, thorough):
        square = _square_px(corners, board_shape)
        if not np.isfinite(square) or square < 2.0:
            continue
        half = int(np.clip(round(subpix_window * square), 2, 9))
        refined = cv2.cornerSubPix(gray, corners.reshape(-1, 1, 2).astype(np.float32), (half, half), (-1, -1),
                                   _SUBPIX).reshape(-1, 2).astype(np.float64)
        if not verify_grid(gray, refined, board_shape, max_grid_residual):
            continue
        ordered, scores = reorder_chessboard_corners(gray, refined, board_shape)
        if scores[0] - scores[1] < match_score_min_diff or scores[0] < min_anchor_score:
            continue
        return ordered.astype(np.float64), scores
    return None


def saddle_response(gray: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """``max(−det H, 0)`` of the image blurred by ``sigma`` px: large at chessboard X-corners (float32)."""
    b = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma)
    xx = cv2.Sobel(b, cv2.CV_32F, 2, 0, ksize=3)
    yy = cv2.Sobel(b, cv2.CV_32F, 0, 2, ksize=3)
    xy = cv2.Sobel(b, cv2.CV_32F, 1, 1, ksize=3)
    return np.maximum(xy * xy - xx * yy, 0)


def locate_board(gray: np.ndarray, min_points: int = 12, relative: float = 0.2, snr: float = 4.0,
                 min_response: float = 100.0):
    """Bounding box ``(lo (2,), hi (2,))`` px of the densest cluster of saddle points and their median
    nearest-neighbour spacing px, or None when the frame holds no cluster of ``min_points`` saddle points."""
    r = saddle_response(gray)
    peak = float(r.max())
    noise = float(np.percentile(r[::2, ::2], 99.0))
    threshold = max(relative * peak, snr * noise, min_response)
    if peak < threshold:
        return None
    maxima = (r >= threshold) & (r == cv2.dilate(r, np.ones((3, 3), np.uint8)))
    ys, xs = np.nonzero(maxima)
    if len(xs) < min_points:
        return None
    pts = np.stack([xs, ys], -1).astype(np.float64)
    center = np.median(pts, 0)
    for _ in range(3):                      # shrink onto the densest cluster (robust to stray saddle points)
        d = np.linalg.norm(pts - center, axis=1)
        cluster = pts[d <= 2.5 * np.median(d) + 3.0]
        center = np.median(cluster, 0)
    if len(cluster) < min_points:
        return None
    d2 = np.sum((cluster[:, None] - cluster[None]) ** 2, -1)
    np.fill_diagonal(d2, np.inf)
    spacing = float(np.sqrt(np.median(d2.min(1))))
    return cluster.min(0), cluster.max(0), spacing


def _candidates(gray: np.ndarray, board_shape, target_square_px: float, thorough: bool):
    """Approximate corner sets (N, 2) in full-image px, most promising first."""
    height, width = gray.shape
    located = locate_board(gray)
    if located is not None:
        lo, hi, spacing = located
        margin = 0.35 * float((hi - lo).max()) + 3.0 * spacing
        x0, y0 = np.maximum(np.floor(lo - margin), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(hi + margin) + 1, [width, height]).astype(int)
        crop = gray[y0:y1, x0:x1]
        scale = int(np.clip(np.ceil(target_square_px / max(spacing, 1.0)), 1, 4))
        g = crop if scale == 1 else cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        to_full = lambda c: (c.reshape(-1, 2) + 0.5) / scale - 0.5 + np.array([x0, y0])  # noqa: E731
        found, corners = cv2.findChessboardCorners(g, board_shape, flags=_CLASSIC | cv2.CALIB_CB_FAST_CHECK)
        if found:
            yield to_full(corners)
        if thorough:
            found, corners = cv2.findChessboardCorners(g, board_shape, flags=_CLASSIC)
            if found:
                yield to_full(corners)
            found, corners = cv2.findChessboardCornersSB(_CLAHE.apply(g), board_shape,
                                                         flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
            if found:
                yield to_full(corners)
    if thorough:
        found, corners = cv2.findChessboardCorners(gray, board_shape, flags=_CLASSIC)
        if found:
            yield corners.reshape(-1, 2)


def _square_px(corners: np.ndarray, board_shape) -> float:
    """Smallest mean spacing (px) between neighbouring corners along the board's rows or columns."""
    cols, rows = board_shape
    G = corners.reshape(rows, cols, 2)
    a = np.linalg.norm(np.diff(G, axis=0), axis=-1).mean()
    b = np.linalg.norm(np.diff(G, axis=1), axis=-1).mean()
    return float(min(a, b))


def _grid_homography(corners: np.ndarray, board_shape):
    """Least-squares homography from grid coordinates (column, row) to image px, and its residuals (N,) px."""
    cols, rows = board_shape
    r, c = np.mgrid[0:rows, 0:cols]
    grid = np.stack([c.ravel(), r.ravel()], -1).astype(np.float64)
    H, _ = cv2.findHomography(grid, corners.astype(np.float64), 0)
    if H is None:
        return None, np.full(len(corners), np.inf)
    proj = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), H).reshape(-1, 2)
    return H, np.linalg.norm(proj - corners, axis=1)


def verify_grid(gray: np.ndarray, corners: np.ndarray, board_shape, max_grid_residual: float = 0.1) -> bool:
    """True when ``corners`` (N, 2) (OpenCV row-major order, any of the 4 orientations) are a chessboard's internal
    corners: they fit a plane homography to within ``max_grid_residual`` squares + 0.8 px (figures:
    docs/algorithms.md, Measured figures), the predicted squares alternate dark/light, and
    the cells just outside the checker area are light."""
    if not np.isfinite(corners).all():
        return False
    square = _square_px(corners, board_shape)
    H, residual = _grid_homography(corners, board_shape)
    if H is None or residual.max() > max_grid_residual * square + 0.8:
        return False
    if np.sqrt(np.mean(residual ** 2)) > 0.75 + 0.05 * square:
        return False
    cols, rows = board_shape
    # cell centres: checker cells (c, r) for c in −1..cols−1, r in −1..rows−1, and the ring around them
    cc, rr = np.meshgrid(np.arange(-2, cols + 1), np.arange(-2, rows + 1))
    offsets = np.array([[0.5, 0.5], [0.3, 0.3], [0.7, 0.3], [0.3, 0.7], [0.7, 0.7]])
    pts = np.stack([cc, rr], -1)[..., None, :] + offsets              # (rows+3, cols+3, 5, 2)
    img_pts = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)
    height, width = gray.shape
    inside = ((img_pts[:, 0] >= 0) & (img_pts[:, 0] <= width - 1) & (img_pts[:, 1] >= 0)
              & (img_pts[:, 1] <= height - 1))
    values = cv2.remap(gray.astype(np.float32), img_pts[:, 0].astype(np.float32).reshape(-1, 1),
                       img_pts[:, 1].astype(np.float32).reshape(-1, 1), cv2.INTER_LINEAR).ravel()
    values = np.where(inside, values, np.nan).reshape(rows + 3, cols + 3, 5)
    n_in = inside.reshape(rows + 3, cols + 3, 5).sum(-1)
    cell = np.where(n_in > 0, np.nansum(values, -1) / np.maximum(n_in, 1), np.nan)
    checker = cell[1:-1, 1:-1]                                         # (rows+1, cols+1)
    ring = np.concatenate([cell[0], cell[-1], cell[1:-1, 0], cell[1:-1, -1]])
    parity = (np.add.outer(np.arange(rows + 1), np.arange(cols + 1)) % 2).astype(bool)
    a, b = checker[parity], checker[~parity]
    a, b, ring = a[np.isfinite(a)], b[np.isfinite(b)], ring[np.isfinite(ring)]
    if len(a) < 0.8 * parity.sum() or len(b) < 0.8 * (~parity).sum():
        return False
    dark, light = (a, b) if np.median(a) < np.median(b) else (b, a)
    contrast = np.median(light) - np.median(dark)
    if contrast < 15:
        return False
    middle = (np.median(light) + np.median(dark)) / 2
    if (dark > middle).mean() > 0.05 or (light < middle).mean() > 0.05:
        return False
    # the printed margin: ring cells light (a few may fall off the paper edge or the image)
    return len(ring) >= 0.5 * (2 * (cols + 3) + 2 * (rows + 1)) and (ring > middle).mean() >= 0.85


def reorder_chessboard_corners(gray: np.ndarray, corners: np.ndarray, board_shape) -> tuple[np.ndarray, np.ndarray]:
    """docs/algorithms.md §A.2: canonical order from the anchor dot → (corners reordered, scores sorted descending (4,))."""
    cols, rows = board_shape
    G = corners.reshape(rows, cols, 2)
    r, c = np.mgrid[0:rows, 0:cols]
    grid = np.stack([c.ravel() + 1, r.ravel() + 3], -1).astype(np.float64)
    H, _ = cv2.findHomography(grid, corners.reshape(-1, 2).astype(np.float64), 0)
    ey, ex = np.mgrid[0:rows + 6, 0:cols + 2]
    lattice = np.stack([ex.ravel(), ey.ravel()], -1).astype(np.float64)
    E = cv2.perspectiveTransform(lattice.reshape(-1, 1, 2), H).reshape(rows + 6, cols + 2, 2)
    quads = [
        [E[2, 0], E[0, 0], E[0, 2], E[2, 2]],
        [E[0, -3], E[0, -1], E[2, -1], E[2, -3]],
        [E[-3, -1], E[-1, -1], E[-1, -3], E[-3, -3]],
        [E[-1, 2], E[-1, 0], E[-3, 0], E[-3, 2]],
    ]
    target = np.float32([[0, 40], [0, 0], [40, 0], [40, 40]])
    scores = np.zeros(4)
    for i, quad in enumerate(quads):
        M = cv2.getPerspectiveTransform(np.float32(quad), target)
        patch = cv2.warpPerspective(gray, M, (TEMPLATE_SIZE, TEMPLATE_SIZE)).astype(np.float64)
        if patch.std() > 0:
            scores[i] = np.corrcoef(patch.ravel(), _TEMPLATE.ravel())[0, 1]
    best = int(np.argmax(scores))
    if best in (2, 3):
        G = G[::-1]
    if best in (1, 2):
        G = G[:, ::-1]
    return G.reshape(-1, 2), np.sort(scores)[::-1]


def detect_plain(image: np.ndarray, board_shape=(5, 7)) -> np.ndarray | None:
    """The lab's detector (plain ``findChessboardCorners`` + ``cornerSubPix`` + anchor order), for comparison."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
    found, corners = cv2.findChessboardCorners(gray, board_shape, flags=flags)
    if not found:
        return None
    refined = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.001)).reshape(-1, 2)
    ordered, scores = reorder_chessboard_corners(gray, refined, board_shape)
    return ordered.astype(np.float64) if scores[0] - scores[1] >= 0.1 else None
