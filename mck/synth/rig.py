"""The synthetic 6-camera rig: ``top`` looks down on a ~400 mm arena, ``bottom`` looks up through the floor, four
``side`` cameras at ~30° elevation on four sides. World frame = the top camera's frame (x right, y down in the top
image, z along its optical axis, i.e. towards the floor), as in the lab's calibration files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mck.geometry.camera import rotation_to_rvec

CAMERAS = ("top", "side1", "side2", "side3", "side4", "bottom")
FLOOR_Z = 650.0          # mm, floor depth below the top camera
ARENA_RADIUS = 200.0     # mm


@dataclass(frozen=True)
class Rig:
    """Camera parameters in the lab's conventions.

    names : camera names; extrinsics : (C, 6) rvec + t world→camera (mm); Ks : (C, 3, 3); dists : (C, 5);
    size : (width, height) px.
    """

    names: tuple[str, ...]
    extrinsics: np.ndarray
    Ks: np.ndarray
    dists: np.ndarray
    size: tuple[int, int]

    @property
    def intrinsics(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(K, d) for K, d in zip(self.Ks, self.dists)]


def look_at(center: np.ndarray, target: np.ndarray, down=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World→camera (R, t) for a camera at ``center`` looking at ``target`` with image-down towards ``down``."""
    z = np.asarray(target, float) - np.asarray(center, float)
    z /= np.linalg.norm(z)
    down = np.asarray(down, float)
    y = down - (down @ z) * z
    if np.linalg.norm(y) < 1e-9:
        y = np.array([0.0, 1.0, 0.0]) - z[1] * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    return R, -R @ np.asarray(center, float)


def make_rig(size: tuple[int, int] = (640, 512), seed: int = 0) -> Rig:
    """The default rig at image ``size`` (width, height), with small per-camera perturbations from ``seed``."""
    rng = np.random.default_rng(seed)
    width, height = size
    target = np.array([0.0, 0.0, FLOOR_Z - 40.0])
    poses = [(np.eye(3), np.zeros(3))]
    elevation = np.deg2rad(30.0)
    distance = 820.0
    for i in range(4):
        azimuth = np.deg2rad(90.0 * i + 45.0 + rng.uniform(-4, 4))
        center = target + distance * np.array([np.cos(elevation) * np.cos(azimuth),
                                               np.cos(elevation) * np.sin(azimuth), -np.sin(elevation)])
        poses.append(look_at(center, target))
    poses.append(look_at(np.array([0.0, 0.0, FLOOR_Z + 620.0]), target, down=(0.0, 1.0, 0.0)))
    extrinsics = np.stack([np.concatenate([rotation_to_rvec(R), t]) for R, t in poses])
    extrinsics[0] = 0.0
    scale = width / 640.0
    focal = {"top": 700.0, "bottom": 720.0}
    Ks, dists = [], []
    for name in CAMERAS:
        f = focal.get(name, 860.0) * scale * (1 + rng.uniform(-0.02, 0.02))
        K = np.array([[f, 0, width / 2 + rng.uniform(-6, 6) * scale],
                      [0, f * (1 + rng.uniform(-0.003, 0.003)), height / 2 + rng.uniform(-6, 6) * scale],
                      [0, 0, 1.0]])
        dist = np.array([rng.uniform(-0.12, -0.05), rng.uniform(0.01, 0.06), rng.uniform(-8e-4, 8e-4),
                         rng.uniform(-8e-4, 8e-4), 0.0])
        Ks.append(K)
        dists.append(dist)
    return Rig(CAMERAS, extrinsics, np.stack(Ks), np.stack(dists), (width, height))
