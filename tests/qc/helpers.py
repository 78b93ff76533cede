"""Synthetic pipeline outputs in the lab formats (no pipeline run): a session's keypoints.h5 files,
robust_triangulation.npy, gimbal.npy and the calibration's camera_params.h5, with exact geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mck.skeleton import KEYPOINT_NAMES, MOUSE

CAMERAS = ("top", "side1", "side2", "side3", "side4", "bottom")


def rig(size=(48, 64)) -> tuple[np.ndarray, list]:
    """Six cameras 400 mm from the origin looking at it: extrinsics (6, 6) rvec+t, intrinsics [(K, dist)]."""
    import cv2

    h, w = size
    ext, intr = [], []
    for i in range(6):
        angle = 2 * np.pi * i / 6
        centre = np.array([400 * np.cos(angle), 400 * np.sin(angle), 150.0 if i else 400.0])
        z = -centre / np.linalg.norm(centre)
        x = np.cross([0, 0, 1.0], z)
        x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-6 else np.array([1.0, 0, 0])
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        t = -R @ centre
        ext.append(np.r_[cv2.Rodrigues(R)[0].ravel(), t])
        K = np.array([[w * 2.0, 0, w / 2], [0, w * 2.0, h / 2], [0, 0, 1]])
        intr.append((K, np.zeros(5)))
    return np.array(ext), intr


def session_outputs(folder: Path, session: str, frames: int = 12, *, gimbal: bool = True,
                    triangulation: bool = True, keypoints: bool = True, size=(48, 64), seed: int = 0) -> dict:
    """Write a session's outputs into ``folder``; returns {"points": (T,15,3), "ext", "intr", paths…}."""
    import h5py

    from mck.calibration_io import save_camera_params
    from mck.geometry.camera import project

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.normal(0, 20, (len(KEYPOINT_NAMES), 3))
    points = base[None] + np.cumsum(rng.normal(0, 1, (frames, 1, 3)), axis=0)
    ext, intr = rig(size)
    calib = folder / f"{session}.camera_params.h5"
    save_camera_params(calib, CAMERAS, ext, intr)
    uv = project(points, ext, intr)  # (T, C, K, 2)
    out = {"points": points, "ext": ext, "intr": intr, "calibration": str(calib), "keypoints": {}}
    for c, cam in enumerate(CAMERAS):
        path = folder / f"{session}.{cam}.keypoints.h5"
        out["keypoints"][cam] = str(path)
        if keypoints:
            with h5py.File(path, "w") as f:
                f["uv"] = (uv[:, c] + rng.normal(0, 0.5, uv[:, c].shape)).astype(np.float32)
                f["conf"] = rng.uniform(0.3, 1.0, uv.shape[:1] + uv.shape[2:3]).astype(np.float32)
    if triangulation:
        np.save(folder / f"{session}.robust_triangulation.npy", points.astype(np.float64))
    if gimbal:
        hrnet_index = [KEYPOINT_NAMES.index(MOUSE.bodyparts[i]) for i in MOUSE.node_order]
        np.save(folder / f"{session}.gimbal.npy", points[:, hrnet_index].astype(np.float32))
    return out
