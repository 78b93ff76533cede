"""A chessboard corner finder that survives blur, low contrast and small, oblique boards: the board's internal
corners are the strongest saddle points of the image, on a lattice. OpenCV's detectors look for the squares (quads or
sector responses) and lose a motion-blurred or 4-px-square board whose X-junctions are still plain.

``lattice_corners(gray, board_shape)``: saddle points (maxima of ``−det H`` of the slightly blurred image) → from a
strong seed and its two nearest non-collinear neighbours, grow a lattice: predict each empty neighbouring lattice
cell from a homography fitted to the cells found so far and take the saddle point nearest the prediction (within
0.3 of the local spacing) → accept when the lattice is exactly the board's internal-corner grid (5 × 7 either way,
every cell found). Returns the corners in OpenCV's layout (rows of ``cols``) or None; the caller refines and
verifies them (``detect.verify_grid``: homography residual, checker parity, printed margin) and orders them by the
anchor dot.
"""

from __future__ import annotations

import cv2
import numpy as np


def saddle_points(gray: np.ndarray, sigma: float = 2.0, max_points: int = 120, relative: float = 0.08):
    """(M, 2) px saddle points, strongest first, and their strengths (M,): local maxima (5 × 5) of ``−det H`` of
    the image blurred by ``sigma`` above ``relative`` × the 10th strongest one."""
    b = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma)
    xx = cv2.Sobel(b, cv2.CV_32F, 2, 0, ksize=3)
    yy = cv2.Sobel(b, cv2.CV_32F, 0, 2, ksize=3)
    xy = cv2.Sobel(b, cv2.CV_32F, 1, 1, ksize=3)
    r = np.maximum(xy * xy - xx * yy, 0)
    maxima = (r > 0) & (r == cv2.dilate(r, np.ones((5, 5), np.uint8)))
    ys, xs = np.nonzero(maxima)
    if len(xs) < 10:
        return np.zeros((0, 2)), np.zeros(0)
    s = r[ys, xs]
    order = np.argsort(s)[::-1]
    ref = s[order[min(9, len(order) - 1)]]
    order = order[s[order] >= relative * ref][:max_points]
    return np.stack([xs[order], ys[order]], -1).astype(np.float64), s[order]


def _bases(points: np.ndarray, seed: int, n: int = 4):
    """Candidate lattice bases at ``points[seed]``: pairs (k_a, k_b) of its ``n`` nearest neighbours that are not
    collinear with it and of comparable length."""
    p0 = points[seed]
    d = np.linalg.norm(points - p0, axis=1)
    d[seed] = np.inf
    near = np.argsort(d)[:n]
    out = []
    for x in range(len(near)):
        for y in range(x + 1, len(near)):
            va, vb = points[near[x]] - p0, points[near[y]] - p0
            cos = abs(va @ vb) / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-9)
            if cos < 0.8 and 0.3 < np.linalg.norm(vb) / np.linalg.norm(va) < 3.3:
                out.append((int(near[x]), int(near[y])))
    return out


def _grow(points: np.ndarray, seed: int, basis: tuple[int, int], max_extent: int, tol: float = 0.3):
    """Lattice cells {(i, j): point index} grown from ``points[seed]`` with first neighbours ``basis``, or None."""
    p0 = points[seed]
    cells = {(0, 0): seed, (1, 0): basis[0], (0, 1): basis[1]}
    used = {seed, *basis}
    for _ in range(4 * max_extent):
        ij = np.array(list(cells), float)
        uv = points[list(cells.values())]
        # global affine fit (the fallback prediction): uv ≈ [i, j, 1] @ M
        M = np.linalg.lstsq(np.c_[ij, np.ones(len(ij))], uv, rcond=None)[0]
        frontier = {(i + di, j + dj) for i, j in cells for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))} - set(cells)
        added = False
        for i, j in sorted(frontier):
            preds, steps = [], []
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                n1, n2 = (i - di, j - dj), (i - 2 * di, j - 2 * dj)
                if n1 in cells and n2 in cells:            # linear extrapolation along a lattice line
                    p1, p2 = points[cells[n1]], points[cells[n2]]
                    preds.append(2 * p1 - p2)
                    steps.append(np.linalg.norm(p1 - p2))
            if preds:
                q, step = np.mean(preds, 0), min(steps)
            else:
                nb = [cells[c] for c in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if c in cells]
                if not nb:
                    continue
                q = np.array([i, j, 1.0]) @ M
                step = np.linalg.norm(points[nb[0]] - q)
            dist = np.linalg.norm(points - q, axis=1)
            k = int(np.argmin(dist))
            if dist[k] < tol * step and k not in used:
                cells[(i, j)] = k
                used.add(k)
                added = True
        ij = np.array(list(cells))
        if np.ptp(ij[:, 0]) >= max_extent or np.ptp(ij[:, 1]) >= max_extent:
            return None
        if not added:
            break
    return cells


def _trim(cells: dict, strength: np.ndarray, size: tuple[int, int], max_missing: int = 3):
    """Cut the grown lattice down to ``size`` = (n_i, n_j) lattice lines by dropping, one at a time, the weaker of
    the two outermost lines (the T-junctions where the outer squares meet the white margin are weaker saddles than
    the internal X-corners). Returns {(i, j): index} with i, j from 0, or None when a cell is missing or a dropped
    line is not clearly weaker than the lines kept."""
    ij = np.array(list(cells))
    idx = np.array(list(cells.values()))
    ij = ij - ij.min(0)
    extent = ij.max(0) + 1
    if (extent < size).any():
        return None
    lo, hi = np.zeros(2, int), extent - 1
    dropped = []
    for axis in (0, 1):
        while hi[axis] - lo[axis] + 1 > size[axis]:
            s_lo = strength[idx[ij[:, axis] == lo[axis]]].mean()
            s_hi = strength[idx[ij[:, axis] == hi[axis]]].mean()
            if s_lo < s_hi:
                dropped.append(s_lo)
                lo[axis] += 1
            else:
                dropped.append(s_hi)
                hi[axis] -= 1
    keep = ((ij >= lo) & (ij <= hi)).all(1)
    if keep.sum() < size[0] * size[1] - max_missing:
        return None
    if dropped and max(dropped) > 0.8 * np.median(strength[idx[keep]]):
        return None
    return {tuple(int(v) for v in c - lo): int(k) for c, k in zip(ij[keep], idx[keep])}


def lattice_corners(gray: np.ndarray, board_shape=(5, 7), sigmas=(2.0, 1.2, 3.0), seeds: int = 3):
    """Internal corners (cols·rows, 2) px in OpenCV's layout (``rows`` rows of ``cols``, any of the 4 flips), from
    the saddle-point lattice of ``gray`` at the first saddle scale ``sigmas`` (px) that works; None when no seed
    grows into the board's grid."""
    for sigma in np.atleast_1d(sigmas):
        corners = _lattice_at(gray, board_shape, float(sigma), seeds)
        if corners is not None:
            return corners
    return None


def _lattice_at(gray: np.ndarray, board_shape, sigma: float, seeds: int):
    cols, rows = board_shape
    points, strength = saddle_points(gray, sigma)
    if len(points) < cols * rows:
        return None
    points, strength = points[:cols * rows + 30], strength[:cols * rows + 30]
    for seed, basis in ((k, b) for k in range(min(seeds, len(points))) for b in _bases(points, k)):
        cells = _grow(points, seed, basis, max(cols, rows) + 4)
        if cells is None or len(cells) < cols * rows - 3:
            continue
        extent = np.ptp(np.array(list(cells)), 0) + 1
        # the board's 5 columns along the lattice direction with fewer lines
        size = (cols, rows) if extent[0] <= extent[1] else (rows, cols)
        trimmed = _trim(cells, strength, size)
        if trimmed is None:
            continue
        ij = np.array(list(trimmed), float)
        uv = points[list(trimmed.values())]
        if len(trimmed) < cols * rows:            # a cell or two lost to glare or blur: the lattice's prediction
            H, _ = cv2.findHomography(ij, uv, 0)
            if H is None:
                continue
            full = np.stack(np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij"), -1).reshape(-1, 2)
            ij, uv = full.astype(float), cv2.perspectiveTransform(full.reshape(-1, 1, 2).astype(float), H).reshape(-1, 2)
        grid = np.zeros((rows, cols, 2))
        for (i, j), p in zip(ij.astype(int), uv):
            if size == (cols, rows):
                grid[j, i] = p
            else:
                grid[i, j] = p
        return grid.reshape(-1, 2)
    return None
