"""A session's 2D detections on the alignment grid: the per-camera ``keypoints.h5`` files read and stacked into the
array convention ``(frames, cameras, keypoints, 2)`` px / ``(frames, cameras, keypoints)`` confidences, one row per
trigger of ``aligned_frame_numbers.csv`` when the session has one. Shared by qc, export and the report."""

from __future__ import annotations

import os

import numpy as np

from mck.errors import InputError
from mck.skeleton import KEYPOINT_NAMES


def read_keypoints(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``{video}.keypoints.h5`` → uv ``(T, 15, 2)`` px, conf ``(T, 15)`` (``mck.keypoints_io``)."""
    from mck.keypoints_io import load_keypoints

    return load_keypoints(path)


def read_alignment(path: str | None, cameras: list[str]) -> np.ndarray | None:
    """``aligned_frame_numbers.csv`` → ``(rows, cameras)`` bool (``mck.alignment``), None without a file."""
    from mck.alignment import load_alignment

    return load_alignment(path, cameras) if path and os.path.isfile(path) else None


def stack_2d(kps: dict[str, tuple[np.ndarray, np.ndarray]], cameras: list[str],
             alignment: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-camera (uv, conf) → ``(T, C, K, 2)``, ``(T, C, K)`` (NaN for a missing camera), spread onto the
    alignment's trigger rows if given (``alignment`` columns in ``cameras`` order). Inconsistent inputs are
    compared frame by frame from frame 0 and the returned note says so (QC shows, it does not refuse)."""
    from mck.alignment import apply_alignment

    K = len(KEYPOINT_NAMES)
    present = [c for c in cameras if c in kps]
    note = ""
    uvs = [kps[c][0] for c in present]
    confs = [kps[c][1] for c in present]
    try:
        cols = None if alignment is None else alignment[:, [cameras.index(c) for c in present]]
        uvs = apply_alignment(uvs, cols, present)
        confs = apply_alignment(confs, cols, present)
    except InputError as exc:
        note = f"{exc.what}; compared frame by frame from frame 0"
    T = max((len(u) for u in uvs), default=0)
    uv = np.full((T, len(cameras), K, 2), np.nan)
    conf = np.full((T, len(cameras), K), np.nan)
    for cam, u, p in zip(present, uvs, confs):
        c = cameras.index(cam)
        uv[: len(u), c], conf[: len(p), c] = u, p
    return uv, conf, note


def load_session_2d(keypoints_paths: dict, alignment_path: str | None = None
                    ) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """The session's readable keypoint files stacked on the alignment grid: (uv, conf, cameras); (None, None,
    cameras) when no camera has a file."""
    cameras = list(keypoints_paths)
    kps = {cam: read_keypoints(p) for cam, p in keypoints_paths.items() if p and os.path.isfile(p)}
    if not kps:
        return None, None, cameras
    uv, conf, _ = stack_2d(kps, cameras, read_alignment(alignment_path, cameras))
    return uv, conf, cameras


def video_fps(videos: dict, default: float = 30.0) -> float:
    """Frame rate of the first readable video of ``videos`` ({camera: path}), else ``default``."""
    from mck.video import video_info

    for path in (videos or {}).values():
        try:
            fps = video_info(path).fps
            if fps > 0:
                return fps
        except InputError:
            continue
    return default
