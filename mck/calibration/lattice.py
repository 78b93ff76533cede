"""A chessboard corner finder that survives blur, low contrast and small, oblique boards: the board's internal
corners are the strongest saddle points of the image, on a lattice. OpenCV's detectors look for the squares (quads or
sector responses) and lose a motion-blurred or 4-px-square board whose X-junctions are still plain.

``lattice_candidates(gray, board_shape)``: saddle points (maxima of ``−det H`` of the slightly blurred image, at
several blur scales, optionally only inside a region) → from each of the strongest as a seed and each pair of its
near, non-collinear neighbours, grow a lattice: predict each empty neighbouring cell by linear extrapolation along
lattice lines (else from an affine fit to the cells found so far) and take the saddle point nearest the prediction
(within 0.3 of the local step) → every window of the board's internal-corner grid (5 × 7 either way, ≤ 3 cells
missing, filled from the window's homography) is a candidate, most cells and strongest saddles first: a lattice
often also grows over the T-junctions at the checker's edge and the plate's border. Candidates are in OpenCV's layout
(rows of ``cols``); the caller refines and verifies them (``detect.verify_grid``: homography residual, checker
parity, printed margin — a shifted window fails it) and orders them by the anchor dot.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def saddle_response(gray: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """``max(−det H, 0)`` of the image blurred by ``sigma`` px: large at chessboard X-corners (float32)."""
    b = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma)
    xx = cv2.Sobel(b, cv2.CV_32F, 2, 0, ksize=3)
    yy = cv2.Sobel(b, cv2.CV_32F, 0, 2, ksize=3)
    xy = cv2.Sobel(b, cv2.CV_32F, 1, 1, ksize=3)
    return np.maximum(xy * xy - xx * yy, 0)


def saddle_points(gray: np.ndarray, sigma: float = 2.0, max_points: int = 120, relative: float = 0.08, roi=None):
    """(M, 2) px saddle points, strongest first, and their strengths (M,): local maxima (5 × 5) of ``−det H`` of
    the image blurred by ``sigma`` above ``relative`` × the 10th strongest one; only those inside ``roi``
    (x0, y0, x1, y1) px when given."""
    r = saddle_response(gray, sigma)
    maxima = (r > 0) & (r == cv2.dilate(r, np.ones((5, 5), np.uint8)))
    ys, xs = np.nonzero(maxima)
    if roi is not None:
        inside = (xs >= roi[0]) & (xs <= roi[2]) & (ys >= roi[1]) & (ys <= roi[3])
        ys, xs = ys[inside], xs[inside]
    if len(xs) < 10:
        return np.zeros((0, 2)), np.zeros(0)
    s = r[ys, xs]
    order = np.argsort(s)[::-1]
    ref = s[order[min(9, len(order) - 1)]]
    order = order[s[order] >= relative * ref][:max_points]
    return np.stack([xs[order], ys[order]], -1).astype(np.float64), s[order]


def _bases(points: np.ndarray, seed: int, n: int = 4, max_ratio: float = 6.0):
    """Candidate lattice bases at ``points[seed]``: pairs (k_a, k_b) of its ``n`` nearest neighbours that are not
    collinear with it and whose lengths differ by less than ``max_ratio`` (a board seen at 80° is foreshortened
    about 6×)."""
    p0 = points[seed]
    d = np.linalg.norm(points - p0, axis=1)
    d[seed] = np.inf
    near = np.argsort(d)[:n]
    out = []
    for x in range(len(near)):
        for y in range(x + 1, len(near)):
            va, vb = points[near[x]] - p0, points[near[y]] - p0
            cos = abs(va @ vb) / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-9)
            if cos < 0.8 and 1 / max_ratio < np.linalg.norm(vb) / np.linalg.norm(va) < max_ratio:
                out.append((int(near[x]), int(near[y])))
    return out


def _grow(points: np.ndarray, seed: int, basis: tuple[int, int], max_extent: int, tol: float = 0.3):
    """Lattice cells {(i, j): point index} grown from ``points[seed]`` with first neighbours ``basis``, or None.
    (Scalar arithmetic in Python on purpose: the lattices are tens of points, numpy's per-call cost would dominate.)"""
    xs, ys = points[:, 0], points[:, 1]
    pts = points.tolist()
    cells = {(0, 0): seed, (1, 0): basis[0], (0, 1): basis[1]}
    used = {seed, *basis}
    steps4 = ((1, 0), (-1, 0), (0, 1), (0, -1))
    for _ in range(4 * max_extent):
        M = None                                           # global affine fit uv ≈ [i, j, 1] @ M, when needed
        frontier = {(i + di, j + dj) for i, j in cells for di, dj in steps4} - set(cells)
        added = False
        for i, j in sorted(frontier):
            qx = qy = 0.0
            n_pred, step = 0, math.inf
            for di, dj in steps4:
                n1, n2 = (i - di, j - dj), (i - 2 * di, j - 2 * dj)
                if n1 in cells and n2 in cells:            # linear extrapolation along a lattice line
                    (x1, y1), (x2, y2) = pts[cells[n1]], pts[cells[n2]]
                    qx, qy, n_pred = qx + 2 * x1 - x2, qy + 2 * y1 - y2, n_pred + 1
                    step = min(step, math.hypot(x1 - x2, y1 - y2))
            if n_pred:
                qx, qy = qx / n_pred, qy / n_pred
            else:
                nb = [cells[c] for c in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if c in cells]
                if not nb:
                    continue
                if M is None:
                    ij = np.array(list(cells), float)
                    M = np.linalg.lstsq(np.c_[ij, np.ones(len(ij))], points[list(cells.values())],
                                        rcond=None)[0].tolist()
                qx = i * M[0][0] + j * M[1][0] + M[2][0]
                qy = i * M[0][1] + j * M[1][1] + M[2][1]
                step = math.hypot(pts[nb[0]][0] - qx, pts[nb[0]][1] - qy)
            d2 = (xs - qx) ** 2 + (ys - qy) ** 2
            k = int(d2.argmin())
            if d2[k] < (tol * step) ** 2 and k not in used:
                cells[(i, j)] = k
                used.add(k)
                added = True
        ij = np.array(list(cells))
        if np.ptp(ij[:, 0]) >= max_extent or np.ptp(ij[:, 1]) >= max_extent:
            return None
        if not added:
            break
    return cells


def _windows(cells: dict, strength: np.ndarray, size: tuple[int, int], max_missing: int = 3, limit: int = 4):
    """Windows of ``size`` = (n_i, n_j) lattice lines inside the grown lattice, best first: at most
    ``max_missing`` cells missing, ranked by cells present, then mean saddle strength (the internal X-corners are
    stronger saddles than the T-junctions where the outer squares meet the margin, or the plate's edges the lattice
    may also have grown into). Each is {(i, j) from 0: point index}; the caller's grid check (checker parity, light
    margin) tells the board's window from a shifted one."""
    ij = np.array(list(cells))
    idx = np.array(list(cells.values()))
    ij = ij - ij.min(0)
    extent = ij.max(0) + 1
    if (extent < size).any():
        return []
    found = []
    for a in range(extent[0] - size[0] + 1):
        for b in range(extent[1] - size[1] + 1):
            keep = ((ij >= (a, b)) & (ij < (a + size[0], b + size[1]))).all(1)
            if keep.sum() >= size[0] * size[1] - max_missing:
                found.append((-int(keep.sum()), -float(strength[idx[keep]].mean()), a, b, keep))
    found.sort(key=lambda w: w[:2])
    return [{tuple(int(v) for v in c - (a, b)): int(k) for c, k in zip(ij[keep], idx[keep])}
            for _, _, a, b, keep in found[:limit]]


def lattice_candidates(gray: np.ndarray, board_shape=(5, 7), sigmas=(2.0, 1.2, 3.0, 4.0), seeds: int = 14, roi=None,
                       max_candidates: int = 12):
    """Candidate internal-corner grids (cols·rows, 2) px, most plausible first, at most ``max_candidates``: per
    saddle scale ``sigmas`` (px) and seed, the board-sized windows of the grown lattice. ``roi`` (x0, y0, x1, y1)
    px: only saddle points inside it count (a bright LED array beside the board has stronger saddles than a dim
    board and would crowd it out). The caller verifies each (``detect.verify_grid``)."""
    seen: set = set()
    for sigma in np.atleast_1d(sigmas):
        for corners, key in _lattice_at(gray, board_shape, float(sigma), seeds, roi):
            if key in seen:
                continue
            seen.add(key)
            yield corners
            if len(seen) >= max_candidates:
                return


def _lattice_at(gray: np.ndarray, board_shape, sigma: float, seeds: int, roi=None):
    """(corners (cols·rows, 2), identity key) for every board-sized window of every lattice grown from a seed."""
    cols, rows = board_shape
    points, strength = saddle_points(gray, sigma, roi=roi)
    if len(points) < cols * rows:
        return
    points, strength = points[:cols * rows + 30], strength[:cols * rows + 30]
    grown: set = set()
    for seed, basis in ((k, b) for k in range(min(seeds, len(points))) for b in _bases(points, k)):
        cells = _grow(points, seed, basis, max(cols, rows) + 8)
        if cells is None or len(cells) < cols * rows - 3:
            continue
        key = frozenset(cells.values())
        if key in grown:
            continue
        grown.add(key)
        extent = np.ptp(np.array(list(cells)), 0) + 1
        # the board's 5 columns along the lattice direction with fewer lines
        size = (cols, rows) if extent[0] <= extent[1] else (rows, cols)
        for window in _windows(cells, strength, size):
            yield _window_corners(points, window, size, board_shape), (sigma, frozenset(window.values()))


def _window_corners(points: np.ndarray, window: dict, size, board_shape) -> np.ndarray:
    """The window's points as an OpenCV-layout grid (rows, cols) → (N, 2); missing cells from its homography."""
    cols, rows = board_shape
    ij = np.array(list(window), float)
    uv = points[list(window.values())]
    if len(window) < cols * rows:                 # a cell or two lost to glare or blur: the lattice's prediction
        H, _ = cv2.findHomography(ij, uv, 0)
        if H is not None:
            full = np.stack(np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij"), -1).reshape(-1, 2)
            ij = full.astype(float)
            uv = cv2.perspectiveTransform(full.reshape(-1, 1, 2).astype(float), H).reshape(-1, 2)
    grid = np.full((rows, cols, 2), np.nan)
    for (i, j), p in zip(ij.astype(int), uv):
        if size == (cols, rows):
            grid[j, i] = p
        else:
            grid[i, j] = p
    return grid.reshape(-1, 2)
