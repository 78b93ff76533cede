"""Step ``refine_calibration`` (calibration level): the board calibration refined on the animal's keypoints of the
sessions that use it → ``{calibration}.camera_params.refined.h5`` **beside** ``{calibration}.camera_params.h5``
(never overwritten), ``{calibration}.refine_calibration.json`` (before/after reprojection errors per camera, points,
iterations, seconds, accepted) and ``{calibration}.refine_calibration.png`` (per camera: residual histograms before
and after).

The refinement (:func:`mck.calibration.refine_extrinsics`) moves the camera poses only by default (camera 0 fixed,
the board's scale kept). When it does not lower the median reprojection error the board's cameras are written
unchanged and the summary says ``accepted: false``. Which file triangulation and gimbal read is the project's
``calibration_source`` (board | refined).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from mck.calibration_io import load_camera_params, save_camera_params
from mck.errors import InputError
from mck.io import atomic_path, save_json
from mck.session_data import load_session_2d


def summary_path(output_path: str) -> str:
    base = str(output_path)
    suffix = ".camera_params.refined.h5"
    return (base[: -len(suffix)] if base.endswith(suffix) else os.path.splitext(base)[0]) + ".refine_calibration.json"


def run(keypoints_paths: dict, calibration_path: str, output_path: str, output_paths: list | None = None,
        data_root: str = "", alignment_file: str = "aligned_frame_numbers.csv", conf_threshold: float = 0.5,
        n_points: int = 6000, refine_intrinsics: bool = False, max_frames: int = 200000, seed: int = 0,
        item: str = "", log: logging.Logger | None = None) -> dict:
    """Refine one calibration. ``keypoints_paths``: {session: {camera: keypoints.h5}} (the sessions using it)."""
    from mck.calibration import refine_extrinsics

    log = log or logging.getLogger("mck")
    t0 = time.perf_counter()
    if not os.path.isfile(calibration_path):
        raise InputError("board calibration not found", item=item, path=calibration_path,
                         fix="run step=calibration first")
    names, _, _ = load_camera_params(calibration_path)
    uvs, confs, used = [], [], []
    cameras = None
    for session, per_camera in sorted((keypoints_paths or {}).items()):
        cams = list(per_camera)
        align = os.path.join(data_root, session, alignment_file) if data_root else None
        uv, conf, cams = load_session_2d(per_camera, align)
        if uv is None:
            continue
        if cameras is None:
            cameras = cams
        elif cams != cameras:
            continue
        uvs.append(uv)
        confs.append(conf)
        used.append(session)
    if not uvs:    # no session uses this calibration (yet): the board's cameras stand, and the summary says why
        cameras = list(names)
        uv = np.full((0, len(cameras), 15, 2), np.nan)
        conf = np.zeros((0, len(cameras), 15))
    _, extrinsics, intrinsics = load_camera_params(calibration_path, cameras)
    uv = np.concatenate(uvs)[:max_frames] if uvs else uv
    conf = np.nan_to_num(np.concatenate(confs)[:max_frames]) if uvs else conf
    log.info("%s: refining %d cameras on %d frames of %d session(s)", item, len(cameras), len(uv), len(used))
    reason = ""
    try:
        if not uvs:
            raise ValueError("no session using this calibration has keypoints")
        ext, intr, info = refine_extrinsics(uv, extrinsics, intrinsics, conf, refine_intrinsics=refine_intrinsics,
                                            conf_threshold=conf_threshold, n_points=n_points, seed=seed)
    except ValueError as exc:      # too few points: the board's cameras stand, and the summary says why
        reason = f"not refined: {exc}"
        log.warning("%s: %s (lower conf_threshold or add sessions)", item, reason)
        empty = {"median_px": None, "mean_px": None, "median_px_per_camera": [None] * len(cameras)}
        ext, intr, info = extrinsics, intrinsics, {"before": empty, "after": empty, "iterations": 0,
                                                   "points_used": 0, "observations_used": 0, "rejected": 0}
    accepted = info["after"]["median_px"] is not None and info["before"]["median_px"] is not None and \
        info["after"]["median_px"] < info["before"]["median_px"]
    if not accepted and not reason:
        reason = "not better than the board's: board cameras kept"
    if not accepted:
        ext, intr = extrinsics, intrinsics
    save_camera_params(output_path, cameras, ext, intr)
    paths = list(output_paths or [])
    json_path = paths[1] if len(paths) > 1 else summary_path(output_path)
    png_path = paths[2] if len(paths) > 2 else json_path[: -len(".json")] + ".png"
    _plot(png_path, uv, conf, conf_threshold, extrinsics, intrinsics, ext, intr, cameras, seed)
    moved = _moves(extrinsics, ext)
    summary = {"calibration": item, "board": calibration_path, "refined": str(output_path), "accepted": accepted,
               "reason": reason,
               "sessions": used, "frames": int(len(uv)), "cameras": cameras,
               "before": dict(zip(("median_px", "mean_px"), (info["before"]["median_px"], info["before"]["mean_px"]))),
               "after": dict(zip(("median_px", "mean_px"), (info["after"]["median_px"], info["after"]["mean_px"]))),
               "per_camera": {c: {"before_median_px": b, "after_median_px": a, "rotation_deg": r, "moved_mm": m}
                              for c, b, a, r, m in zip(cameras, info["before"]["median_px_per_camera"],
                                                       info["after"]["median_px_per_camera"], *moved)},
               "iterations": info["iterations"], "points_used": info["points_used"],
               "observations_used": info["observations_used"], "rejected": info["rejected"],
               "refine_intrinsics": bool(refine_intrinsics), "seconds": round(time.perf_counter() - t0, 2)}
    save_json(json_path, summary)
    log.info("%s: median reprojection %s → %s px (%s)", item, info["before"]["median_px"],
             info["after"]["median_px"], "accepted" if accepted else reason)
    return {k: summary[k] for k in ("accepted", "reason", "sessions", "frames", "before", "after", "iterations",
                                    "seconds")}


def _moves(old: np.ndarray, new: np.ndarray) -> tuple[list, list]:
    from mck.geometry import rodrigues

    R0, R1 = rodrigues(old[:, :3]), rodrigues(new[:, :3])
    cos = (np.trace(R1 @ np.swapaxes(R0, 1, 2), axis1=1, axis2=2) - 1) / 2
    c0 = -np.einsum("cji,cj->ci", R0, old[:, 3:])
    c1 = -np.einsum("cji,cj->ci", R1, new[:, 3:])
    return ([round(float(v), 4) for v in np.degrees(np.arccos(np.clip(cos, -1, 1)))],
            [round(float(v), 3) for v in np.linalg.norm(c1 - c0, axis=1)])


def _plot(path: str, uv, conf, conf_threshold, ext0, intr0, ext1, intr1, cameras, seed, max_frames=3000) -> None:
    """Per camera: histogram of the reprojection errors against the robust triangulation, board vs refined."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mck.geometry import reprojection_errors, triangulate

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(uv), min(max_frames, len(uv)), replace=False))
    u = np.where((conf[rows] >= conf_threshold)[..., None], uv[rows], np.nan)
    c = conf[rows]
    errs = [reprojection_errors(triangulate(u, e, i, conf=c), u, e, i) for e, i in ((ext0, intr0), (ext1, intr1))]
    fig = Figure(figsize=(3 * len(cameras), 2.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(cameras), sharey=True)
    top = max(5.0, float(np.nanpercentile(errs[0], 95)) if np.isfinite(errs[0]).any() else 5.0)
    bins = np.linspace(0, top, 40)
    for k, (ax, cam) in enumerate(zip(np.atleast_1d(axes), cameras)):
        for err, label, color in ((errs[0], "board", "0.6"), (errs[1], "refined", "tab:blue")):
            e = err[:, k][np.isfinite(err[:, k])]
            med = np.median(e) if len(e) else float("nan")
            ax.hist(np.clip(e, 0, top), bins=bins, histtype="step", color=color, label=f"{label} {med:.1f} px")
        ax.set_title(cam, fontsize=9)
        ax.set_xlabel("reprojection error (px)")
        ax.legend(fontsize=7)
    fig.suptitle("Calibration refined on the keypoints: reprojection errors per camera (median in the legend)",
                 fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
