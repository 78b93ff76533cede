"""Step ``triangulation`` (session level): six ``{video}.keypoints.h5`` → ``{session}.robust_triangulation.npy``
(lab format, (T, 15, 3) float64 mm, NaN where < 2 confident views) + ``{session}.triangulation.h5`` beside it.

Like the lab's ``v0/triangulation.py`` (docs/algorithms.md §B.2): views with ``conf < conf_threshold`` dropped, the alignment
file (if any) spreads each camera's frames onto trigger rows (dropped frames → NaN). Unlike it, the default method
is ``robust`` (confidence-weighted, outlier-rejecting; ``method="median_dlt"`` reproduces the lab's numbers).

``triangulation.h5``: ``points`` (T, 15, 3) mm, ``reprojection_error`` (T, C, 15) px (NaN where not observed),
``views_used`` (T, C, 15) bool, ``confidence`` (T, C, 15) the detector's (0 = missing), ``camera_names`` (C,), attrs ``method``, ``conf_threshold``.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from mck.alignment import load_alignment
from mck.calibration_io import choose_calibration, load_camera_params, warn_if_failed_qc
from mck.errors import InputError
from mck.geometry import triangulate_detailed
from mck.io import save_h5, save_npy
from mck.keypoints_io import load_keypoints
from mck.sync import align_rows, sync_for, sync_note


def details_path(output_path: str) -> str:
    """``{session}.robust_triangulation.npy`` → ``{session}.triangulation.h5``."""
    base = str(output_path)
    suffix = ".robust_triangulation.npy"
    stem = base[: -len(suffix)] if base.endswith(suffix) else os.path.splitext(base)[0]
    return stem + ".triangulation.h5"


def run(keypoints_paths: dict, calibration_path: str, alignment_path: str | None, output_path: str,
        output_paths: list | None = None, refined_calibration_path: str | None = None,
        calibration_source: str = "board", sync: str = "off", sync_path: str | None = None,
        conf_threshold: float = 0.25, method: str = "robust", item: str | None = None, log=None) -> dict:
    """Triangulate one session. ``keypoints_paths``: {camera: path} in the project's camera order.
    ``calibration_source``: board | refined (``refine_calibration``'s file when it exists); ``sync``: off | auto
    (the alignment ``sync_check`` detected, on top of the declared one)."""
    t0 = time.perf_counter()
    cameras = list(keypoints_paths)
    calibration_path, calibration_used = choose_calibration(calibration_path, refined_calibration_path,
                                                            calibration_source, item)
    sync_result = sync_for(sync, sync_path, item)
    _, extrinsics, intrinsics = load_camera_params(calibration_path, cameras)
    warn_if_failed_qc(calibration_path, log or logging.getLogger("mck"), item or "")
    uvs, confs = [], []
    for cam in cameras:
        uv, conf = load_keypoints(keypoints_paths[cam], item=item)
        uvs.append(uv)
        confs.append(conf)
    alignment = load_alignment(alignment_path, cameras) if alignment_path and os.path.isfile(alignment_path) \
        else None
    uvs = align_rows(uvs, alignment, cameras, sync_result)
    confs = align_rows(confs, alignment, cameras, sync_result)
    uv = np.stack(uvs, axis=1)                                   # (T, C, 15, 2)
    conf = np.nan_to_num(np.stack(confs, axis=1), nan=0.0)       # (T, C, 15)
    low = conf < conf_threshold
    uv = np.where(low[..., None], np.nan, uv)
    if not np.isfinite(uv).any():
        raise InputError(f"no keypoint has confidence ≥ {conf_threshold} in any camera", item=item,
                         fix="check the hrnet outputs or lower conf_threshold")
    if log:
        log.info("triangulating %d frames × %d cameras (%s); calibration: %s (%s); sync: %s", uv.shape[0],
                 uv.shape[1], method, calibration_used, calibration_path, sync_note(sync_result))
    result = triangulate_detailed(uv, extrinsics, intrinsics, conf=np.where(low, 0.0, conf), method=method)
    save_h5(output_paths[1] if output_paths and len(output_paths) > 1 else details_path(output_path), {
        "points": result.points,
        "reprojection_error": result.reprojection_error.astype(np.float32),
        "views_used": result.views_used,
        "confidence": conf.astype(np.float32),
        "camera_names": cameras,
    }, attrs={"method": method, "conf_threshold": float(conf_threshold), "calibration": calibration_path,
              "calibration_source": calibration_used, "sync": sync_note(sync_result)})
    save_npy(output_path, result.points.astype(np.float64))
    finite = np.isfinite(result.points).all(-1)
    used_err = np.where(result.views_used, result.reprojection_error, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_cam = np.nanmedian(used_err, axis=(0, 2))
    elapsed = time.perf_counter() - t0
    return {
        "frames": int(uv.shape[0]),
        "method": method,
        "fraction_triangulated": float(finite.mean()),
        "median_reprojection_error_px": {c: (None if not np.isfinite(v) else float(v))
                                         for c, v in zip(cameras, per_cam)},
        "mean_views_used": float(result.views_used.sum(1)[finite].mean()) if finite.any() else 0.0,
        "dropped_rows": int((~alignment).any(1).sum()) if alignment is not None else 0,
        "calibration": calibration_used,
        "calibration_path": calibration_path,
        "sync": sync_note(sync_result),
        "seconds": elapsed,
    }
