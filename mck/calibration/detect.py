"""Chessboard detection with the lab's anchor-dot ordering (§A.2), made robust for real footage.

``detect_chessboard`` tries, at scales 1×, 2×, 3× (small boards), OpenCV's classic detector (adaptive threshold),
then the sector-based ``findChessboardCornersSB`` on a CLAHE-equalised image (robust to blur, low contrast and
uneven light). Every candidate is verified — the 35 corners must fit a
plane homography to sub-pixel accuracy — then refined with ``cornerSubPix`` (window scaled to the square size, on the upscaled image) and put in the board's canonical order
by the anchor-dot template; an ambiguous dot (best − second score < ``match_score_min_diff``) rejects the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

TEMPLATE_SIZE = 40


def _template() -> np.ndarray:
    t = np.full((TEMPLATE_SIZE, TEMPLATE_SIZE), 255, np.uint8)
    cv2.circle(t, (10, 10), 10, 0, -1)
    return t


_TEMPLATE = _template().astype(np.float64)
_CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))


def detect_chessboard(image: np.ndarray, board_shape: tuple[int, int] = (5, 7), match_score_min_diff: float = 0.1,
                      max_grid_residual_px: float = 1.5) -> np.ndarray | None:
    """Corners ``(cols·rows, 2)`` float px in the board's row-major order fixed by the anchor dot, or None.

    ``image``: grey (H, W) or BGR uint8. ``board_shape`` = (columns, rows) of internal corners.
    """
    result = detect_chessboard_scored(image, board_shape, match_score_min_diff, max_grid_residual_px)
    return None if result is None else result[0]


def detect_chessboard_scored(image, board_shape=(5, 7), match_score_min_diff=0.1, max_grid_residual_px=1.5,
                             min_anchor_score=0.5, scales=(1, 2, 3)):
    """Like ``detect_chessboard`` but returns ``(corners, sorted anchor scores (4,))`` or None.

    ``scales``: upscaling factors tried in order (small boards: squares of ~6 px need 2–3×).
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    for scale in scales:
        g = gray if scale == 1 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        for corners in _candidates(g, board_shape):
            if _grid_residual(corners, board_shape) > max_grid_residual_px * scale:
                continue
            square = _square_px(corners, board_shape)
            half = int(np.clip(round(0.35 * square), 2, 7))
            refined = cv2.cornerSubPix(g, corners.reshape(-1, 1, 2).astype(np.float32), (half, half), (-1, -1),
                                       (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.001)
                                       ).reshape(-1, 2)
            if np.abs(refined - corners).max() > max(1.5 * scale, 0.3 * square):   # wandered: not a clean corner
                continue
            if _grid_residual(refined, board_shape) > max_grid_residual_px * scale:
                continue
            ordered, scores = reorder_chessboard_corners(g, refined, board_shape)
            if scores[0] - scores[1] < match_score_min_diff or scores[0] < min_anchor_score:
                continue
            return ordered.astype(np.float64) / scale, scores
    return None


def _square_px(corners: np.ndarray, board_shape) -> float:
    """Smallest mean spacing (px) between neighbouring corners along the board's rows or columns."""
    cols, rows = board_shape
    G = corners.reshape(rows, cols, 2)
    a = np.linalg.norm(np.diff(G, axis=0), axis=-1).mean()
    b = np.linalg.norm(np.diff(G, axis=1), axis=-1).mean()
    return float(min(a, b))


def _candidates(gray: np.ndarray, board_shape):
    """Corner sets from OpenCV's classic detector (adaptive threshold; fast rejection of empty frames), then the
    sector-based ``findChessboardCornersSB`` on a CLAHE-equalised image (robust to blur, low contrast and uneven
    light)."""
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(gray, board_shape, flags=flags)
    if found:
        yield corners.reshape(-1, 2)
    found, corners = cv2.findChessboardCornersSB(_CLAHE.apply(gray), board_shape, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
    if found:
        yield corners.reshape(-1, 2)


def _grid_residual(corners: np.ndarray, board_shape) -> float:
    """RMS px of the best plane homography from grid indices to the corners (a wrong grid fits badly)."""
    cols, rows = board_shape
    r, c = np.mgrid[0:rows, 0:cols]
    grid = np.stack([c.ravel(), r.ravel()], -1).astype(np.float64)
    H, _ = cv2.findHomography(grid, corners.astype(np.float64), 0)
    if H is None:
        return np.inf
    proj = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), H).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((proj - corners) ** 2, -1))))


def reorder_chessboard_corners(gray: np.ndarray, corners: np.ndarray, board_shape) -> tuple[np.ndarray, np.ndarray]:
    """§A.2: canonical order from the anchor dot. Returns (corners reordered, scores sorted descending (4,))."""
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
