"""The lab's calibration board: a two-sided chessboard with 5 × 7 internal corners, 12.5 mm squares and the anchor
dot of docs/algorithms.md §A.2, and its motion through the rig's volume.

Board coordinates (mm, in the board plane): internal corner (row r, column c) is at (x = c·s, y = r·s), the order of
``generate_chessboard_objpoints`` (docs/algorithms.md §A.2). Checker area: x ∈ [−s, 5s], y ∈ [−s, 7s]; the anchor dot (radius
s/2) sits in the white margin above the first corner row, flush with the left edge, centred at (−s/2, −5s/2) — the
"top-left" candidate of the docs/algorithms.md §A.2 template, so that corner 0 is nearest the dot. The back face carries the
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


def paper_extent(board_shape=BOARD_SHAPE, square: float = SQUARE) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) mm: the printed sheet in board coordinates (checker area, margins and the anchor dot)."""
    cols, rows = board_shape
    return -1.7 * square, (cols + 0.7) * square, -3.7 * square, (rows + 2.7) * square


def texture(x: np.ndarray, y: np.ndarray, board_shape=BOARD_SHAPE, square: float = SQUARE) -> np.ndarray:
    """Grey level at board coordinates (mm); NaN off the board."""
    cols, rows = board_shape
    x0, x1, y0, y1 = paper_extent(board_shape, square)
    inside_paper = (x > x0) & (x < x1) & (y > y0) & (y < y1)
    in_checker = (x >= -square) & (x < cols * square) & (y >= -square) & (y < rows * square)
    i = np.floor(x / square)
    j = np.floor(y / square)
    black = in_checker & ((i + j) % 2 == 0)
    d = dot_center(square)
    dot = (x - d[0]) ** 2 + (y - d[1]) ** 2 < (0.5 * square) ** 2
    value = np.where(black | dot, BLACK, WHITE)
    return np.where(inside_paper, value, np.nan)


# camera pairs a person shows the board to (indices into rig.CAMERAS: top, side1..4, bottom), and single cameras
# (None) for steep views that pin down each camera's intrinsics
_PAIRS = ([(0, i) for i in range(1, 5)] + [(5, i) for i in range(1, 5)] + [(i, i % 4 + 1) for i in range(1, 5)]
          + [(1, 3), (2, 4), (0, 5)])


def board_poses(frames: int, rng: np.random.Generator, keyframe_every: int = 6, rig=None,
                max_incidence_deg: float = 55.0, tilt_deg: float = 40.0, radius: float = 250.0,
                heights: tuple[float, float] = (40.0, 260.0), single_every: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Board → world poses of a calibration video: rotation vectors (T, 3) and translations (T, 3)
    (world = R·board + t).

    The way a person calibrates a rig: every ``keyframe_every`` frames the board is held up to a pair of cameras
    (cycling through top–side, bottom–side, neighbouring and opposite sides, top–bottom; the two-sided board shows
    its back to the second camera when they face each other), somewhere in the arena where both cameras see all of
    it, facing the pair's bisector but tilted by up to ``tilt_deg`` (varied tilt fixes focal length and principal
    point), turned by a random angle in its plane; every fourth key pose is a steep single-camera view. Between key
    poses the board moves smoothly (eased, so it lingers near them). Rejection sampling keeps each key pose
    inside both cameras' images with at most ``max_incidence_deg`` between the board normal and the line of sight,
    and the board above the floor. ``rig``: the cameras (default ``make_rig()``; poses depend on its geometry only).
    """
    from mck.synth.rig import make_rig

    rig = rig or make_rig()
    R_cam = rodrigues(rig.extrinsics[:, :3])
    centers = -np.einsum("cji,cj->ci", R_cam, rig.extrinsics[:, 3:])
    corners = _paper_corners()
    n_keys = frames // keyframe_every + 2
    rotations, positions = [], []
    order = rng.permutation(len(_PAIRS))
    for k in range(n_keys):
        if k % single_every == single_every - 1:
            group = (int(rng.integers(len(centers))),)
        else:
            group = _PAIRS[order[(k - k // single_every) % len(_PAIRS)]]
        for _attempt in range(200):
            pos = np.array([*rng.uniform(-radius, radius, 2), FLOOR_Z - rng.uniform(*heights)])
            if np.hypot(pos[0], pos[1]) > radius:
                continue
            to_cams = centers[list(group)] - pos
            to_cams /= np.linalg.norm(to_cams, axis=1, keepdims=True)
            if len(group) == 2 and to_cams[0] @ to_cams[1] < 0:     # facing each other: one sees the back
                to_cams[1] = -to_cams[1]
            normal = to_cams.sum(0)
            tilt = tilt_deg * (1.4 if len(group) == 1 else 1.0)
            normal = _tilted(normal / np.linalg.norm(normal), np.deg2rad(rng.uniform(0, tilt)), rng)
            R = _frame_from_normal(normal, rng.uniform(-np.pi, np.pi))
            world = (corners - np.array([2.0 * SQUARE, 3.0 * SQUARE, 0.0])) @ R.T + pos
            if world[:, 2].max() > FLOOR_Z - 5:                       # a corner under the floor
                continue
            if all(_sees(rig, c, world, normal, centers[c], max_incidence_deg) for c in group):
                break
        rotations.append(R)
        positions.append(pos)
    rotations, positions = np.stack(rotations), np.stack(positions)
    key_idx = np.arange(n_keys) * keyframe_every
    t = np.arange(frames)
    k = np.minimum(t // keyframe_every, n_keys - 2)
    w = (t - key_idx[k]) / keyframe_every
    w = w * w * (3 - 2 * w)                                            # ease in and out: linger at key poses
    trans = (1 - w)[:, None] * positions[k] + w[:, None] * positions[k + 1]
    rots = np.stack([_slerp(rotations[a], rotations[a + 1], b) for a, b in zip(k, w)])
    center = np.array([2.0 * SQUARE, 3.0 * SQUARE, 0.0])
    trans = trans - rots @ center            # place the board's centre at the keyframed position
    from mck.geometry.camera import rotation_to_rvec

    return rotation_to_rvec(rots), trans


def _paper_corners(board_shape=BOARD_SHAPE, square: float = SQUARE) -> np.ndarray:
    x0, x1, y0, y1 = paper_extent(board_shape, square)
    return np.array([[x0, y0, 0.0], [x1, y0, 0.0], [x1, y1, 0.0], [x0, y1, 0.0]])


def _tilted(n: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` turned by ``angle`` rad towards a random direction."""
    helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    a = np.cross(n, helper)
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    phi = rng.uniform(0, 2 * np.pi)
    return np.cos(angle) * n + np.sin(angle) * (np.cos(phi) * a + np.sin(phi) * b)


def _sees(rig, c: int, world: np.ndarray, normal: np.ndarray, center: np.ndarray, max_incidence_deg: float) -> bool:
    """Camera ``c`` sees the whole sheet (corners ``world`` (4, 3)) inside its image, at a moderate incidence."""
    from mck.geometry.camera import project_camera

    sight = center - world.mean(0)
    cos = abs(sight @ normal) / np.linalg.norm(sight)
    if cos < np.cos(np.deg2rad(max_incidence_deg)):
        return False
    cam = world @ rodrigues(rig.extrinsics[c, :3]).T + rig.extrinsics[c, 3:]
    if (cam[:, 2] < 50).any():
        return False
    uv = project_camera(world, rig.extrinsics[c, :3], rig.extrinsics[c, 3:], rig.Ks[c], rig.dists[c])
    width, height = rig.size
    margin = 0.02 * width
    return bool(((uv[:, 0] > margin) & (uv[:, 0] < width - margin) & (uv[:, 1] > margin)
                 & (uv[:, 1] < height - margin)).all())


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
