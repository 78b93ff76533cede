"""A keypoints-only synthetic project on disk (no video rendering): tiny placeholder videos so the inventory
finds the items, ``{video}.keypoints.h5`` made by projecting the synthetic animal through the synthetic rig, and a
board calibration (optionally perturbed). Sessions can lose frames without an alignment file, or start late."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mck.calibration_io import save_camera_params
from mck.keypoints_io import save_keypoints
from mck.synth.detections import make_detections, perturb_extrinsics
from tests.conftest import CAMERAS, write_tiny_video

CALIBRATION = "20240422_calibration"


def keypoints_project(root: Path, sessions: dict, frames: int = 600, perturb: bool = False, seed: int = 0) -> dict:
    """``sessions``: {name: {"drop": {camera: [triggers]}, "late": {camera: frames}}}. Returns the true rig,
    the written calibration's extrinsics and per session the true 3D points."""
    truth = {}
    rig = None
    for i, (name, spec) in enumerate(sessions.items()):
        det = make_detections(frames=frames, seed=seed + i)
        rig = det.rig
        (root / name).mkdir(parents=True, exist_ok=True)
        truth[name] = det.points
        for c, cam in enumerate(CAMERAS):
            write_tiny_video(root / name / f"{name}.{cam}.mp4", 4, value0=10 * c)
            keep = np.ones(frames, bool)
            keep[list((spec or {}).get("drop", {}).get(cam, []))] = False
            late = int((spec or {}).get("late", {}).get(cam, 0))
            keep[:late] = False
            save_keypoints(root / name / f"{name}.{cam}.keypoints.h5", np.nan_to_num(det.uv[keep, c], nan=0.0),
                           det.conf[keep, c])
    (root / CALIBRATION).mkdir(parents=True, exist_ok=True)
    for c, cam in enumerate(CAMERAS):
        write_tiny_video(root / CALIBRATION / f"{CALIBRATION}.{cam}.mp4", 4, value0=10 * c)
    ext = perturb_extrinsics(rig.extrinsics, seed=seed + 1, big_camera=2) if perturb else rig.extrinsics
    save_camera_params(root / CALIBRATION / f"{CALIBRATION}.camera_params.h5", CAMERAS, ext, rig.intrinsics)
    return {"rig": rig, "extrinsics": ext, "points": truth}
