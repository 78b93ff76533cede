"""A synthetic GIMBAL problem on the synthetic rig (now :mod:`mck.synth.keypoints`, kept under the old names)."""

from __future__ import annotations

import numpy as np

from mck.synth.keypoints import KeypointSession as Problem  # noqa: F401
from mck.synth.keypoints import animal_poses, keypoint_session


def mouse_poses(frames: int, seed: int) -> np.ndarray:
    """(frames, 14, 3) mm, node order, from the synthetic animal."""
    return animal_poses(frames, seed)[0]


def make_problem(frames: int = 200, seed: int = 0, noise_px: float = 2.0, outlier_fraction: float = 0.1,
                 missing_fraction: float = 0.05) -> Problem:
    return keypoint_session(frames, seed, noise_px=noise_px, outlier_fraction=outlier_fraction,
                            missing_fraction=missing_fraction)
