"""The lab's calibration board: a two-sided chessboard with 5 × 7 internal corners, 12.5 mm squares and the anchor
dot of §A.2, and its motion through the rig's volume.

Board coordinates (mm, in the board plane): internal corner (row r, column c) is at (x = c·s, y = r·s), the order of
``generate_chessboard_objpoints`` (§A.2). The checker area spans x ∈ [−s, 5s], y ∈ [−s, 7s]; the anchor dot (radius
s/2) sits in the white margin above the first corner row, flush with the left edge, centred at (−s/2, −5s/2) — the
"top-left" candidate of the §A.2 template, so that corner 0 is the corner nearest the dot. The back face carries the
mirror image, so a point has the same identity from both sides.
"""

from __future__ import annotations

import numpy as np

from mck.geometry.camera import rodrigues
from mck.synth.rig import FLOOR_Z

BOARD_SHAPE = (5, 7)       # (columns, rows) of internal corners
SQUARE = 12.5              # mm
WHITE, BLACK = 225.0, 30.0


def object_points(board_shape=BOARD_SHAPE, square: float = SQUARE) -> np.ndarray:
    """(N, 3) corner positions in board coordinates, row-major, z = 0."""
    cols, rows = board_shape
    r, c = np.mgrid[0:rows, 0:cols]
    return np.stack([c.ravel() * square, r.ravel() * square, np.zeros(rows * cols)], -1)


def dot_center(square: float = SQUARE) -> np.ndarray:
    return np.array([-0.5 * square, -2.5 * square])


def texture(x: np.ndarray, y: np.ndarray, board_shape=BOARD_SHAPE, square: float = SQUARE) -> np.ndarray:
    """Grey level at board coordinates (mm); NaN off the board."""
    cols, rows = board_shape
    inside_paper = (x > -1.7 * square) & (x < (cols + 0.7) * square) & (y > -3.7 * square) & (y < (rows + 2.7) * square)
    in_checker = (x >= -square) & (x < cols * square) & (y >= -square) & (y < rows * square)
    i = np.floor(x / square)
    j = np.floor(y / square)
    black = in_checker & ((i + j) % 2 == 0)
    d = dot_center(square)
    dot = (x - d[0]) ** 2 + (y - d[1]) ** 2 < (0.5 * square) ** 2
    value = np.where(black | dot, BLACK, WHITE)
    return np.where(inside_paper, value, np.nan)


def board_poses(frames: int, rng: np.random.Generator, keyframe_every: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Smoothly interpolated random board poses: rotation vectors (T, 3) and translations (T, 3) of the
    board → world transform (world = R·board + t), keeping the board in the shared volume above the floor."""
    n_keys = frames // keyframe_every + 2
    keys_t = np.stack([rng.uniform(-90, 90, n_keys), rng.uniform(-90, 90, n_keys),
                       rng.uniform(FLOOR_Z - 150, FLOOR_Z - 60, n_keys)], -1)
    normals = []
    for _ in range(n_keys):
        kind = rng.random()
        if kind < 0.25:       # roughly horizontal: top and bottom (and steep sides) see it
            n = np.array([0, 0, 1.0]) + rng.normal(0, 0.35, 3)
        else:                 # roughly vertical, facing a random direction: side cameras see it
            a = rng.uniform(0, 2 * np.pi)
            n = np.array([np.cos(a), np.sin(a), rng.uniform(-0.9, 0.9)])
        normals.append(n / np.linalg.norm(n))
    spin = rng.uniform(-np.pi, np.pi, n_keys)
    rotations = np.stack([_frame_from_normal(n, s) for n, s in zip(normals, spin)])
    key_idx = np.arange(n_keys) * keyframe_every
    t = np.arange(frames)
    trans = np.stack([np.interp(t, key_idx, keys_t[:, k]) for k in range(3)], -1)
    rots = np.empty((frames, 3, 3))
    for f in range(frames):   # per-frame rotation interpolation between keyframes (cheap, small)
        k = min(f // keyframe_every, n_keys - 2)
        w = (f - key_idx[k]) / keyframe_every
        rots[f] = _slerp(rotations[k], rotations[k + 1], w)
    center = np.array([2.0 * SQUARE, 3.0 * SQUARE, 0.0])
    trans = trans - rots @ center            # place the board's centre at the keyframed position
    from mck.geometry.camera import rotation_to_rvec

    return rotation_to_rvec(rots), trans


def _frame_from_normal(n: np.ndarray, spin: float) -> np.ndarray:
    helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    ex = np.cross(helper, n)
    ex /= np.linalg.norm(ex)
    ey = np.cross(n, ex)
    ex, ey = np.cos(spin) * ex + np.sin(spin) * ey, -np.sin(spin) * ex + np.cos(spin) * ey
    return np.stack([ex, ey, n], axis=1)


def _slerp(r0: np.ndarray, r1: np.ndarray, w: float) -> np.ndarray:
    from mck.geometry.camera import rotation_to_rvec

    delta = rotation_to_rvec(r1 @ r0.T)
    return rodrigues(delta * w) @ r0
