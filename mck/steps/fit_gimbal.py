"""Step ``fit_gimbal`` (project level): triangulated sessions → ``weights/gimbal_params.p`` (the lab's layout,
algorithms.md §C.8), with the bone-length bug of the lab's notebook fixed (see :mod:`mck.gimbal.fit`).

Inputs per session: ``{session}.robust_triangulation.npy`` (T, 15, 3) and, beside it, ``{session}.triangulation.h5``
whose ``reprojection_error`` (T, C, 15) px gives the observation inlier variances (every 10th frame, as the lab) and,
with its ``confidence`` (T, C, 15), the fitted observation model (:mod:`mck.gimbal.observation_fit`; triangulations
written before mck stored confidences get the lab's variances only).
"""

from __future__ import annotations

import logging
import os
import time

import h5py
import numpy as np

from mck.errors import InputError
from mck.skeleton import MOUSE
from mck.steps.triangulation import details_path


def to_node_order(keypoints15: np.ndarray) -> np.ndarray:
    """(..., 15, D) in HRNet order → (..., 14, D) in GIMBAL node order (tail_tip dropped)."""
    return keypoints15[..., MOUSE.node_order + 1, :]


def _per_camera_node_order(values: np.ndarray) -> np.ndarray:
    """(T, C, 15) per detection → (C, T, 14) in node order."""
    return np.moveaxis(to_node_order(values[..., None])[..., 0], 1, 0)


def run(triangulation_paths: list, output_path: str, num_states: int = 50, num_iters: int = 1000, seed: int = 1,
        error_frame_step: int = 10, cameras: list | None = None, item: str = "", log: logging.Logger | None = None) -> dict:
    """Fit GIMBAL's parameters on every listed session; returns frames used, states, seconds."""
    from mck.gimbal import fit_params, save_params

    t0 = time.perf_counter()
    poses, errors, confidences, cameras = [], [], [], None
    missing = [p for p in triangulation_paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{len(missing)} session(s) have no triangulation, e.g. {missing[0]}", item=item,
                         fix="run `python -m mck step=triangulation -m session='glob(*)'` first, or list the "
                             "sessions to use in project.fit_sessions")
    if not triangulation_paths:
        raise InputError("no sessions to fit on", item=item, fix="set project.fit_sessions or add sessions")
    for path in triangulation_paths:
        points = np.load(path)
        if points.ndim != 3 or points.shape[1:] != (15, 3):
            raise InputError(f"expected (frames, 15, 3), found {points.shape}", item=item, path=path)
        poses.append(to_node_order(points))
        details = details_path(path)
        if os.path.isfile(details):
            with h5py.File(details, "r") as f:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["camera_names"][()]]
                if cameras is not None and names != cameras:
                    raise InputError(f"camera order {names} differs from {cameras}", item=item, path=details,
                                     fix="all sessions of one fit must use the same cameras")
                cameras = names
                err = f["reprojection_error"][::error_frame_step]           # (T', C, 15)
                conf = f["confidence"][::error_frame_step] if "confidence" in f else None
            errors.append(_per_camera_node_order(err))                      # (C, T', 14)
            confidences.append(None if conf is None else _per_camera_node_order(conf))
    positions = np.concatenate(poses)
    complete = int(np.isfinite(positions).all(axis=(1, 2)).sum())
    if log:
        log.info("fitting %d states on %d complete frames of %d sessions", num_states, complete, len(poses))
    if complete < num_states:
        raise InputError(f"only {complete} frames have all 14 keypoints triangulated; {num_states} pose states "
                         "need more", item=item, fix="fit on more sessions or set step.func_kwargs.num_states lower")
    with_conf = bool(errors) and all(c is not None for c in confidences)
    if log and errors and not with_conf:
        log.info("a triangulation.h5 has no confidences (written by an older mck): the lab's observation variances")
    params = fit_params(positions, MOUSE.parents,
                        reprojection_errors=np.concatenate(errors, axis=1) if errors else None,
                        confidences=np.concatenate(confidences, axis=1) if with_conf else None,
                        num_cameras=None if errors else len(cameras or []) or None, num_states=int(num_states), num_iters=int(num_iters),
                        seed=int(seed), node_names=MOUSE.names, camera_names=cameras)
    os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
    save_params(output_path, params)
    return {"sessions": len(poses), "frames": int(positions.shape[0]), "complete_frames": complete,
            "num_states": int(num_states), "em_final_log_likelihood": float(params["log_likelihood"][-1]),
            "median_bone_length_mm": float(np.median(params["radii"][1:])),
            "observation_model": {k[len("obs_model_"):]: round(float(v), 4) for k, v in params.items()
                                  if k.startswith("obs_model_") and np.ndim(v) == 0} or "lab",
            "seconds": round(time.perf_counter() - t0, 1)}
