"""Step ``qc`` (session level): QC plots, numbers and an overlay video from the files the pipeline wrote.

Writes ``{session}.qc.json`` (the primary output: numbers per plot and what was missing) and, beside it,
``{session}.qc/NAME.png`` (confidence, jumps, reprojection, bone_lengths, missing, calibration) and
``{session}.qc/overlay.mp4`` (views in a grid, 2D detections coloured by confidence, the GIMBAL — else
triangulated — skeleton reprojected). Nothing of the pipeline is recomputed except the reprojection of the saved
3D points; a missing input gives a placeholder plot naming it, never a crash.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mck.errors import InputError
from mck.io import load_json, save_json
from mck.qc import metrics, overlay, plots
from mck.session_data import read_alignment, read_keypoints, stack_2d, video_fps
from mck.skeleton import EDGES, KEYPOINT_NAMES, gimbal_to_hrnet

PLOTS = ("confidence", "jumps", "reprojection", "bone_lengths", "missing", "calibration")


def calibration_residuals(output_root: str | None, calibration: str | None, cameras: list[str]
                          ) -> tuple[np.ndarray | None, str, dict]:
    """Per-camera residuals from the calibration job's record metrics (whatever list of length C it stored)."""
    if not output_root or not calibration:
        return None, "", {}
    from mck import layout

    rec = layout.read_json(layout.record_path(output_root, "calibration", "camera_params.h5", calibration)) or {}
    found = rec.get("metrics") or {}
    for key, value in found.items():
        wanted = "resid" in key.lower() or key == "rms_px"
        if isinstance(value, dict) and set(cameras) <= set(value) and wanted:
            return np.array([float(value[c]) for c in cameras]), key, found
        if isinstance(value, list) and len(value) == len(cameras) and wanted:
            return np.asarray(value, float), key, found
    return None, "", found


# ----------------------------------------------------------------------------------------------- step
def run(session_name: str, videos: dict, keypoints_paths: dict, calibration_path: str | None,
        output_path: str, triangulation_path: str | None = None, gimbal_path: str | None = None,
        gimbal_obs_path: str | None = None,
        triangulation_details_path: str | None = None,
        alignment_path: str | None = None, output_root: str | None = None,
        calibration: str | None = None, sync_path: str | None = None, conf_threshold: float = 0.25,
        jump_px: float = 50.0,
        overlay_seconds: float = 20.0, overlay_start: int = 0, overlay_scale: float = 0.5, make_overlay: bool = True,
        progress: bool = True, item: str = "", log: logging.Logger | None = None) -> dict:
    """Write the session's QC plots, overlay video and ``qc.json``; returns headline numbers."""
    item = item or session_name
    cameras = list(keypoints_paths or videos)
    qc_dir = Path(output_path).with_suffix("")  # {session}.qc.json → {session}.qc/ ({session}.qc.v2/ for a variant)
    qc_dir.mkdir(parents=True, exist_ok=True)
    missing: dict[str, str] = {}
    result: dict[str, Any] = {"session": session_name, "cameras": cameras, "keypoints": list(KEYPOINT_NAMES),
                              "conf_threshold": conf_threshold, "missing_inputs": missing, "plots": {}}

    # inputs -------------------------------------------------------------------------------------------------
    kps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for cam in cameras:
        path = (keypoints_paths or {}).get(cam)
        if not path or not os.path.isfile(path):
            missing[f"keypoints.{cam}"] = f"{path or session_name + '.' + cam + '.keypoints.h5'} not found " \
                                          "(run step=hrnet)"
            continue
        try:
            kps[cam] = read_keypoints(path)
        except InputError as exc:
            missing[f"keypoints.{cam}"] = f"{path} unreadable ({exc.what})"
    try:
        alignment = read_alignment(alignment_path, cameras)
    except InputError as exc:
        alignment = None
        missing["alignment"] = exc.one_line()
    uv = conf = None
    if kps:
        uv, conf, note = stack_2d(kps, cameras, alignment)
        if note:
            result["note"] = note
    tri_path, gim_path = triangulation_path or "", gimbal_path or ""
    tri = gim = None
    if tri_path and os.path.isfile(tri_path):
        tri = np.load(tri_path).astype(float)
    else:
        missing["triangulation"] = f"{tri_path or 'robust_triangulation.npy'} not found (run step=triangulation)"
    if gim_path and os.path.isfile(gim_path):
        gim = gimbal_to_hrnet(np.load(gim_path).astype(float))
    else:
        missing["gimbal"] = f"{gim_path or 'gimbal.npy'} not found (run step=gimbal; optional)"
    if gim is not None and gimbal_obs_path and os.path.isfile(gimbal_obs_path):
        counts = np.load(gimbal_obs_path)                      # (T, 14) node order: cameras that saw the keypoint
        unobserved = ~(counts > 0).any(axis=1)
        result["gimbal_unobserved_frames"] = int(unobserved.sum())
        result["gimbal_unobserved_keypoint_fraction"] = round(float((counts == 0).mean()), 4)
        if unobserved.any() and log:
            log.warning("%s: %d frames of gimbal.npy had no 2D observation (the prior's extrapolation)", item,
                        int(unobserved.sum()))
    cal = None
    if calibration_path and os.path.isfile(calibration_path):
        try:
            from mck.calibration_io import load_camera_params

            cal = load_camera_params(calibration_path, cameras)
        except InputError as exc:
            missing["calibration"] = exc.one_line()
    else:
        missing["calibration"] = f"{calibration_path or 'camera_params.h5'} not found (run step=calibration)"

    def emit(name: str, make, message: str | None) -> None:
        fig = plots.placeholder(name.replace("_", " "), message) if message else make()
        plots.save_figure(fig, qc_dir / f"{name}.png")
        result["plots"][name] = {"png": f"{qc_dir.name}/{name}.png", "caption": plots.CAPTIONS[name],
                                 "placeholder": message}

    names = list(KEYPOINT_NAMES)
    # 1. confidence
    if conf is not None:
        s = metrics.confidence_summary(conf)
        result["confidence"] = {"median": s["median"], "fraction_below_threshold": s["fraction_below_0.25"],
                                "overall_median": metrics.nan_stats(conf)["median"]}
    emit("confidence", lambda: plots.confidence(conf, cameras, names), None if conf is not None else
         "no 2D keypoints: " + "; ".join(v for k, v in missing.items() if k.startswith("keypoints")))
    # 2. jumps (on confident detections only)
    uv_conf = None
    if uv is not None:
        uv_conf = np.where((conf >= conf_threshold)[..., None], uv, np.nan)
        s = metrics.jump_summary(uv_conf, jump_px)
        result["jumps"] = {"p99_px": s["p99_px"], "jump_fraction": s["jump_fraction"], "jump_px": jump_px,
                           "overall": metrics.nan_stats(metrics.displacement_2d(uv_conf))}
    emit("jumps", lambda: plots.jumps(uv_conf, cameras, names, jump_px),
         None if uv is not None else "no 2D keypoints to measure jumps on")
    # 3. reprojection error of the triangulation
    reason = None if (tri is not None and cal is not None and uv is not None) else \
        "reprojection needs " + ", ".join(n for n, v in (("the triangulation", tri), ("the calibration", cal),
                                                         ("2D keypoints", uv)) if v is None)
    errors = None
    if reason is None:
        T = min(len(tri), len(uv))
        if len(tri) != len(uv):
            result["reprojection_note"] = f"triangulation has {len(tri)} frames, keypoints {len(uv)}: first {T} used"
        errors = saved_reprojection_errors(triangulation_details_path, cameras, T)
        if errors is None:
            projected = project_points(tri[:T], cal)
            errors = metrics.reprojection_errors(projected, uv_conf[:T])
            result["reprojection_source"] = "recomputed from robust_triangulation.npy and the calibration"
        else:
            result["reprojection_source"] = "triangulation.h5 (views the triangulation used)"
        result["reprojection"] = {"median_px_per_camera": {cam: metrics.nan_stats(errors[:, c])["median"]
                                                           for c, cam in enumerate(cameras)},
                                  "overall": metrics.nan_stats(errors)}
    emit("reprojection", lambda: plots.reprojection(errors, cameras, names), reason)
    # 4. bone lengths
    edge_idx = [(KEYPOINT_NAMES.index(a), KEYPOINT_NAMES.index(b)) for a, b in EDGES]
    bone_names = [f"{a}–{b}" for a, b in EDGES]
    series = {}
    if tri is not None:
        series["triangulation"] = metrics.bone_lengths(tri, edge_idx)
    if gim is not None:
        series["gimbal"] = metrics.bone_lengths(gim, edge_idx)
    fps = video_fps(videos)
    if series:
        result["bone_lengths"] = {src: {"names": bone_names, "median_mm": metrics._nan_quantiles(v, 0, (0.5,))[0],
                                        "iqr_mm": np.subtract(*metrics._nan_quantiles(v, 0, (0.75, 0.25))),
                                        "drift_mm": _drift_range(v)} for src, v in series.items()}
    emit("bone_lengths", lambda: plots.bone_lengths(series, bone_names, fps),
         None if series else "no 3D positions: " + missing.get("triangulation", ""))
    # 5. missing keypoints
    miss2 = metrics.missing_fraction(uv_conf) if uv_conf is not None else None
    miss3 = {src: metrics.missing_fraction(v) for src, v in (("triangulation", tri), ("gimbal", gim)) if v is not None}
    result["missing_fraction"] = {"2d": miss2, **{f"3d_{k}": v for k, v in miss3.items()}}
    emit("missing", lambda: plots.missing(miss2, miss3, cameras, names),
         None if (miss2 is not None or miss3) else "neither 2D keypoints nor 3D positions exist yet")
    # 6. calibration
    if cal is not None:
        from mck.geometry.camera import rodrigues

        _, ext, intr = cal
        R = rodrigues(ext[:, :3])
        centres = -np.einsum("cji,cj->ci", R, ext[:, 3:])
        resid, key, cal_metrics = calibration_residuals(output_root, calibration, cameras)
        result["calibration"] = {"path": calibration_path, "camera_centres_mm": dict(zip(cameras, centres)),
                                 "focal_px": dict(zip(cameras, [float(k[0][0, 0]) for k in intr])),
                                 "residuals": dict(zip(cameras, resid)) if resid is not None else None,
                                 "residual_metric": key or None,
                                 "record_metrics": {k: v for k, v in cal_metrics.items()
                                                    if isinstance(v, (int, float, str))}}
        emit("calibration", lambda: plots.calibration(cameras, centres, resid, key or "residual"), None)
    else:
        emit("calibration", None, missing.get("calibration", "no calibration"))

    # overlay video ------------------------------------------------------------------------------------------
    if make_overlay:
        result["overlay"] = write_overlay(qc_dir / "overlay.mp4", videos, cameras, uv, conf,
                                          gim if gim is not None else tri, "gimbal" if gim is not None else
                                          "triangulation" if tri is not None else None, cal, fps,
                                          overlay_start, overlay_seconds, overlay_scale, progress, log)
    # sync check (its own plot, beside the session's outputs) ------------------------------------------------
    sync = load_json(sync_path) if sync_path and os.path.isfile(sync_path) else None
    if sync:
        png = Path(sync_path).with_suffix(".png")
        result["sync"] = {"ok": bool(sync.get("ok")), "findings": [f.get("message") for f in sync.get("findings")
                                                                    or []]}
        if png.is_file():
            result["plots"]["sync"] = {"png": png.name, "placeholder": None,
                                       "caption": "Sync check: residual vs frame shift per camera over the session "
                                                  "(red = detected offset; in sync = red line at 0). "
                                       + ("; ".join(result["sync"]["findings"]) or "Cameras in sync.")}
    save_json(output_path, result)
    if log:
        log.info("%s: qc written to %s (missing: %s)", item, qc_dir, ", ".join(missing) or "nothing")
    out = {"missing_inputs": len(missing)}
    if errors is not None:
        out["reprojection_median_px"] = result["reprojection"]["overall"]["median"]
    if result.get("overlay"):
        out["overlay_frames"] = result["overlay"].get("frames", 0)
    return out


def saved_reprojection_errors(path: str | None, cameras: list[str], frames: int) -> np.ndarray | None:
    """``reprojection_error`` ``(T, C, 15)`` px of ``{session}.triangulation.h5`` where the triangulation step wrote
    it (views it did not use → NaN), reordered to ``cameras``; None if absent or not matching."""
    import h5py

    if not path or not os.path.isfile(path):
        return None
    try:
        with h5py.File(path, "r") as f:
            err = np.asarray(f["reprojection_error"][()], float)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["camera_names"][()]]
            if "views_used" in f:
                err = np.where(f["views_used"][()], err, np.nan)
    except (OSError, KeyError):
        return None
    if not set(cameras) <= set(names) or len(err) < frames:
        return None
    return err[:frames][:, [names.index(c) for c in cameras]]


def project_points(points: np.ndarray, cal) -> np.ndarray:
    """World mm ``(T, K, 3)`` → distorted px ``(T, C, K, 2)`` with the loaded calibration (mck.geometry.project)."""
    from mck.geometry.camera import project

    _, ext, intr = cal
    return project(points, ext, intr)


def _drift_range(lengths: np.ndarray) -> list:
    _, med = metrics.drift(lengths, 10)
    with np.errstate(all="ignore"):
        return (np.nanmax(med, axis=0) - np.nanmin(med, axis=0)).tolist() if np.isfinite(med).any() else []


def write_overlay(path: Path, videos: dict, cameras: list[str], uv, conf, points3d, source: str | None, cal,
                  fps: float, start: int, seconds: float, scale: float, progress: bool,
                  log: logging.Logger | None) -> dict:
    """Encode the overlay video; returns {path, frames, skeleton source} (or why it was not written)."""
    from tqdm import tqdm

    from mck.video import iter_frames, video_info, write_video

    paths = [videos.get(c) if videos else None for c in cameras]
    paths = [p if p and os.path.isfile(p) else None for p in paths]
    if not any(paths):
        return {"written": False, "why": "no videos found"}
    sizes, lengths = [], []
    for p in paths:
        try:
            info = video_info(p) if p else None
        except InputError:
            info = None
        sizes.append((info.height, info.width) if info else None)
        lengths.append(info.frames if info and info.frames > 0 else 0)
    default = next(s for s in sizes if s)
    sizes = [s or default for s in sizes]
    n = int(round(seconds * fps))
    if max(lengths) > 0:
        n = max(0, min(n, max(lengths) - start))
    stop = start + n
    skeleton_uv = project_points(points3d[start:stop], cal) if (points3d is not None and cal is not None) else None
    edges = [(KEYPOINT_NAMES.index(a), KEYPOINT_NAMES.index(b)) for a, b in EDGES]
    readers = [iter_frames(p, start, stop, gray=False, prefetch=4) if p else None for p in paths]

    def frames():
        for i in range(n):
            images = []
            for r in readers:
                images.append(next(r, None) if r is not None else None)
            if all(im is None for im in images):
                return
            t = start + i
            views = []
            for c, cam in enumerate(cameras):
                views.append(overlay.draw_view(
                    images[c], sizes[c], scale, cam,
                    uv[t, c] if uv is not None and t < len(uv) else None,
                    conf[t, c] if conf is not None and t < len(conf) else None,
                    skeleton_uv[i, c] if skeleton_uv is not None and i < len(skeleton_uv) else None, edges))
            yield overlay.compose(views, f"frame {t}  skeleton: {source or 'none'}  dots: confidence red=0 green=1")
            bar.update(1)

    with tqdm(total=n, unit="frame", desc=f"overlay {path.parent.name}", disable=not progress) as bar:
        written = write_video(path, frames(), fps=fps, crf=23, preset="veryfast")
    if log:
        log.info("overlay: %d frames → %s", written, path)
    return {"written": written > 0, "path": f"{path.parent.name}/{path.name}", "frames": written, "start": start,
            "skeleton": source}
