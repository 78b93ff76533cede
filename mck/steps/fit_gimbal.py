"""Step ``fit_gimbal`` (project level): triangulated sessions → ``weights/gimbal_params.p`` (the lab's layout,
docs/algorithms.md §C.8), with the bone-length bug of the lab's notebook fixed (see :mod:`mck.gimbal.fit`).

Inputs per session: ``{session}.robust_triangulation.npy`` (T, 15, 3) and, beside it, ``{session}.triangulation.h5``
whose ``reprojection_error`` (T, C, 15) px gives the observation inlier variances (every 10th frame, as the lab) and,
with its ``confidence`` (T, C, 15), the fitted observation model (:mod:`mck.gimbal.observation_fit`; triangulations
written before mck stored confidences get the lab's variances only).

Bone lengths (``bone_lengths=labels``, mck's default; the lab measured them on the triangulations): the training
labels of frames labelled in two or more cameras of a session with a calibration are triangulated, and each bone
seen in at least ``min_label_frames`` of them takes its mean length there. The triangulations carry the detector's
systematic errors (a small network pulls a paw's front and back points together, the ears towards the head), and a
skeleton measured on them holds GIMBAL to those errors in the frames the detector got right. Bones with too few
labelled frames, and projects without such labels, keep the triangulations' lengths (the log and the job's metrics
say which). The tolerance ``radii_std`` is always measured on the triangulations.
"""

from __future__ import annotations

import itertools
import logging
import os
import time

import h5py
import numpy as np

from mck.errors import InputError
from mck.skeleton import MOUSE, per_camera_node_order, to_node_order


BONE_LENGTH_SOURCES = ("labels", "triangulation")


def label_poses(labels_dir: str, calibration_paths: dict, cameras: list,
                alignment_paths: dict | None = None) -> np.ndarray:
    """3D poses (N, 15, 3) mm, HRNet order, from the labels of the N instants labelled in ≥ 2 cameras of a session
    whose calibration exists (``{session}.{camera}.{frame}.jpg`` names, docs/algorithms.md §D.3; with an alignment file the
    frame numbers are mapped to triggers, as cameras that dropped frames number them differently); each in its
    calibration's world frame. NaN where a keypoint has fewer than 2 labelled views; (0, 15, 3) when there are none."""
    from mck.alignment import trigger_rows
    from mck.calibration_io import load_camera_params
    from mck.detection.labels import read_labels
    from mck.geometry import triangulate

    alignment_paths = alignment_paths or {}
    usable = {s for s, path in calibration_paths.items() if os.path.isfile(path)}
    triggers = {s: trigger_rows(alignment_paths[s], cameras) for s in usable if s in alignment_paths}
    frames: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for it in read_labels(labels_dir):
        parts = it.path.name.split(".")
        if len(parts) < 4 or not parts[2].isdigit() or parts[0] not in usable or it.camera not in cameras:
            continue
        session, frame = parts[0], int(parts[2])
        instant = triggers[session][it.camera].get(frame) if session in triggers else frame
        if instant is not None:
            frames.setdefault((session, instant), {})[it.camera] = it.keypoints
    poses = []
    for session, group in itertools.groupby(sorted(frames.items()), key=lambda entry: entry[0][0]):
        views = [v for _, v in group if len(v) >= 2]
        if not views:
            continue
        names, extrinsics, intrinsics = load_camera_params(calibration_paths[session], list(cameras))
        uv = np.full((len(views), len(names), 15, 2), np.nan)
        for i, v in enumerate(views):
            for c, cam in enumerate(names):
                if cam in v:
                    uv[i, c] = v[cam]
        poses.append(triangulate(uv, extrinsics, intrinsics, method="robust"))
    return np.concatenate(poses) if poses else np.zeros((0, 15, 3))


def _label_radii(labels_dir: str | None, calibration_paths: dict | None, alignment_paths: dict | None,
                 cameras: list, min_frames: int, log: logging.Logger | None) -> tuple[np.ndarray | None, dict]:
    """Bone lengths (14,) mm from the triangulated labels (NaN where fewer than ``min_frames``) and a summary."""
    from mck.gimbal.fit import mean_bone_lengths

    why = ("no labels folder" if not labels_dir or not os.path.isdir(labels_dir) else
           "no calibrated sessions" if not calibration_paths else
           "camera names unknown: no triangulation.h5" if not cameras else None)
    if why:
        if log:
            log.info("bone lengths: from the triangulations (%s)", why)
        return None, {"source": "triangulation", "reason": why}
    poses = to_node_order(label_poses(labels_dir, calibration_paths, cameras, alignment_paths))
    radii, counts = mean_bone_lengths(poses, MOUSE.parents)
    radii = np.where(counts >= min_frames, radii, np.nan)
    used = int(np.isfinite(radii[1:]).sum())
    summary = {"source": "labels" if used else "triangulation", "label_frames": int(poses.shape[0]),
               "bones_from_labels": used, "bones": len(radii) - 1}
    if log:
        if used:
            log.info("bone lengths: %d of %d from %d frames labelled in ≥ 2 cameras%s", used, len(radii) - 1,
                     poses.shape[0], ", the rest from the triangulations" if used < len(radii) - 1 else "")
        else:
            log.info("bone lengths: from the triangulations (%d frames labelled in ≥ 2 cameras, %d needed per bone)",
                     poses.shape[0], min_frames)
    return (radii if used else None), summary


def run(triangulation_paths: dict | list, output_path: str, details_paths: dict | None = None,
        labels_dir: str | None = None,
        calibration_paths: dict | None = None, alignment_paths: dict | None = None, num_states: int = 50,
        num_iters: int = 1000, seed: int = 1,
        error_frame_step: int = 10, cameras: list | None = None, bone_lengths: str = "labels",
        min_label_frames: int = 10, item: str = "", log: logging.Logger | None = None) -> dict:
    """Fit GIMBAL's parameters on every listed session; returns frames used, states, bone-length source, seconds.

    ``calibration_paths`` / ``alignment_paths``: session → ``camera_params.h5`` / ``aligned_frame_numbers.csv``
    (where the labels' sessions are looked up)."""
    from mck.gimbal import fit_params, save_params

    t0 = time.perf_counter()
    if bone_lengths not in BONE_LENGTH_SOURCES:
        raise InputError(f"unknown bone_lengths {bone_lengths!r}", item=item,
                         fix=f"set step.func_kwargs.bone_lengths to one of {', '.join(BONE_LENGTH_SOURCES)}")
    if min_label_frames < 1:
        raise InputError(f"min_label_frames must be at least 1, got {min_label_frames}", item=item,
                         fix="set step.func_kwargs.min_label_frames to a positive number of frames")
    if isinstance(triangulation_paths, dict):   # {session: path} from the declared input
        details_paths = [(details_paths or {}).get(s) for s in triangulation_paths]
        triangulation_paths = list(triangulation_paths.values())
    else:
        details_paths = [None] * len(triangulation_paths)
    calibration_paths = {s: p for s, p in (calibration_paths or {}).items() if p}
    poses, errors, confidences, cameras = [], [], [], None
    missing = [p for p in triangulation_paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{len(missing)} session(s) have no triangulation, e.g. {missing[0]}", item=item,
                         fix="run `python -m mck step=triangulation -m session='glob(*)'` first, or list the "
                             "sessions to use in project.fit_sessions")
    if not triangulation_paths:
        raise InputError("no sessions to fit on", item=item, fix="set project.fit_sessions or add sessions")
    for path, details in zip(triangulation_paths, details_paths):
        points = np.load(path)
        if points.ndim != 3 or points.shape[1:] != (15, 3):
            raise InputError(f"expected (frames, 15, 3), found {points.shape}", item=item, path=path)
        poses.append(to_node_order(points))
        if details and os.path.isfile(details):
            with h5py.File(details, "r") as f:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["camera_names"][()]]
                if cameras is not None and names != cameras:
                    raise InputError(f"camera order {names} differs from {cameras}", item=item, path=details,
                                     fix="all sessions of one fit must use the same cameras")
                cameras = names
                err = f["reprojection_error"][::error_frame_step]           # (T', C, 15)
                conf = f["confidence"][::error_frame_step] if "confidence" in f else None
            errors.append(per_camera_node_order(err))                      # (C, T', 14)
            confidences.append(None if conf is None else per_camera_node_order(conf))
    positions = np.concatenate(poses)
    complete = int(np.isfinite(positions).all(axis=(1, 2)).sum())
    if log:
        log.info("fitting %d states on %d complete frames of %d sessions", num_states, complete, len(poses))
    if complete < num_states:
        raise InputError(f"only {complete} frames have all 14 keypoints triangulated; {num_states} pose states "
                         "need more", item=item, fix="fit on more sessions or set step.func_kwargs.num_states lower")
    radii, bones = None, {"source": "triangulation", "reason": "bone_lengths=triangulation"}
    if bone_lengths == "labels":
        radii, bones = _label_radii(labels_dir, calibration_paths, alignment_paths, list(cameras or []),
                                    int(min_label_frames), log)
    with_conf = bool(errors) and all(c is not None for c in confidences)
    if log and errors and not with_conf:
        log.info("a triangulation.h5 has no confidences (written by an older mck): the lab's observation variances")
    params = fit_params(positions, MOUSE.parents,
                        reprojection_errors=np.concatenate(errors, axis=1) if errors else None,
                        confidences=np.concatenate(confidences, axis=1) if with_conf else None,
                        num_cameras=None if errors else len(cameras or []) or None, num_states=int(num_states), num_iters=int(num_iters),
                        seed=int(seed), node_names=MOUSE.names, camera_names=cameras, radii=radii)
    os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
    save_params(output_path, params)
    return {"sessions": len(poses), "frames": int(positions.shape[0]), "complete_frames": complete,
            "num_states": int(num_states), "em_final_log_likelihood": float(params["log_likelihood"][-1]),
            "median_bone_length_mm": float(np.median(params["radii"][1:])), "bone_lengths": bones,
            "observation_model": {k[len("obs_model_"):]: round(float(v), 4) for k, v in params.items()
                                  if k.startswith("obs_model_") and np.ndim(v) == 0} or "lab",
            "seconds": round(time.perf_counter() - t0, 1)}
