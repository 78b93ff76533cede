"""A synthetic project ready for GIMBAL: videos and ground truth from ``python -m mck synth``, detections =
ground-truth 2D + detector-like noise and 5 % confident mistakes, the ground-truth calibration in place."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from mck.keypoints_io import save_keypoints
from mck.synth import load_ground_truth

SESSIONS = ("20240422_J04301", "20240422_J04302")


def make_detected_project(root: Path, frames: int = 60, seed: int = 0) -> Path:
    subprocess.run([sys.executable, "-m", "mck", "synth", str(root), "--tiny", "--sessions", str(len(SESSIONS)),
                    "--frames", str(frames), "--drop-frames"], check=True, capture_output=True)
    calib = next(p for p in root.iterdir() if "calib" in p.name)
    shutil.copy(root / "ground_truth" / "camera_params.h5", calib / f"{calib.name}.camera_params.h5")
    rng = np.random.default_rng(seed)
    for session in SESSIONS:
        gt = load_ground_truth(root, session)
        for c, cam in enumerate(gt["cameras"]):
            cam = cam.decode() if isinstance(cam, bytes) else str(cam)
            rows = gt["frames"][:, c] >= 0                                # this camera's recorded frames
            uv = gt["uv"][rows, c] + rng.normal(scale=1.5, size=gt["uv"][rows, c].shape)
            conf = np.where(gt["visible"][rows, c], rng.uniform(0.6, 1.0, uv.shape[:2]), 0.1)
            wrong = rng.uniform(size=uv.shape[:2]) < 0.05                # confident mistakes
            uv[wrong] += rng.normal(scale=40, size=(wrong.sum(), 2))
            save_keypoints(root / session / f"{session}.{cam}.keypoints.h5", uv, conf)
    return root
