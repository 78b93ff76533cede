"""Keypoint detections without rendering: the synthetic animal's 3D keypoints projected through a rig, with
detector-like noise, outliers (wrong location, low-ish confidence), missing views and off-image points. Used by the
refinement and sync tests and benchmarks (fast: no video)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mck.geometry import project, rodrigues, rotation_to_rvec
from mck.synth.animal import make_body, trajectory
from mck.synth.rig import Rig, make_rig


@dataclass
class Detections:
    """points : (T, 15, 3) mm true; uv : (T, C, 15, 2) distorted px (NaN missing); conf : (T, C, 15) in [0, 1];
    outlier : (T, C, 15) bool (gross detector errors); rig : the true cameras."""

    points: np.ndarray
    uv: np.ndarray
    conf: np.ndarray
    outlier: np.ndarray
    rig: Rig


def animal_points(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, 15, 3) mm: the synthetic animal's keypoints (HRNet order)."""
    return make_body(trajectory(frames, np.random.default_rng(seed))).keypoints


def make_detections(frames: int = 600, seed: int = 0, rig: Rig | None = None, noise_px: float = 1.5,
                    outlier_fraction: float = 0.03, missing_fraction: float = 0.1,
                    points: np.ndarray | None = None) -> Detections:
    """Project the animal (or ``points`` (T, 15, 3) mm) through ``rig`` (default: ``make_rig()``) and corrupt it."""
    rig = rig or make_rig()
    rng = np.random.default_rng(seed + 7919)
    x = animal_points(frames, seed) if points is None else np.asarray(points, float)
    uv = project(x, rig.extrinsics, rig.intrinsics)
    uv = uv + rng.normal(scale=noise_px, size=uv.shape)
    outlier = rng.uniform(size=uv.shape[:3]) < outlier_fraction
    uv[outlier] += rng.normal(scale=80.0, size=(int(outlier.sum()), 2))
    conf = np.where(outlier, rng.uniform(0.3, 0.8, outlier.shape), rng.uniform(0.6, 1.0, outlier.shape))
    width, height = rig.size
    off = (uv[..., 0] < 0) | (uv[..., 0] >= width) | (uv[..., 1] < 0) | (uv[..., 1] >= height)
    missing = (rng.uniform(size=uv.shape[:3]) < missing_fraction) | off
    uv[missing] = np.nan
    conf = np.where(missing, 0.0, conf)
    return Detections(x, uv, conf, outlier & ~missing, rig)


def perturb_extrinsics(extrinsics: np.ndarray, seed: int = 0, degrees=(1.0, 3.0), mm=(5.0, 10.0),
                       big_camera: int | None = None, big_degrees: float = 10.0) -> np.ndarray:
    """Cameras 1.. turned by a random angle in ``degrees`` about a random axis and moved by ``mm`` (camera centre) (camera 0, the
    world frame, kept); ``big_camera`` turned by ``big_degrees`` instead. Returns (C, 6)."""
    rng = np.random.default_rng(seed)
    out = np.array(extrinsics, dtype=float, copy=True)
    for c in range(1, len(out)):
        angle = np.deg2rad(big_degrees if c == big_camera else rng.uniform(*degrees))
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        R0 = rodrigues(out[c, :3])
        centre = -R0.T @ out[c, 3:]                       # turn about the camera's own centre
        R = rodrigues(axis * angle) @ R0
        shift = rng.normal(size=3)
        centre = centre + shift / np.linalg.norm(shift) * rng.uniform(*mm)
        out[c, :3] = rotation_to_rvec(R)
        out[c, 3:] = -R @ centre
    return out
