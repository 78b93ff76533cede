"""Step ``sync_check`` (session level): are the cameras in sync? ``{session}.sync.json`` + ``{session}.sync.png``.

Per camera, its detections are compared with the other cameras' triangulation when shifted by −k..k frames, per
time window (:func:`mck.sync.detect_offsets`): a constant offset, an offset that starts mid-session (an undeclared
dropped frame) and a camera with a different frame count are reported with the frame where they start and a fix.
``status`` and the report show the findings; with ``project.sync=auto`` triangulation and gimbal use the detected
alignment.

``sync.json``: ``ok``, ``findings`` [{camera_name, kind, offset, start, message}], ``rows``, ``window``,
``camera_names``, ``cameras`` [{segments, shifts, scores (windows × shifts, px), frames}], ``alignment_file``,
``calibration``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from mck.calibration_io import choose_calibration, load_camera_params
from mck.errors import InputError
from mck.io import atomic_path, save_json
from mck.session_data import read_alignment, read_keypoints, stack_2d


def run(keypoints_paths: dict, calibration_path: str, alignment_path: str | None, output_path: str,
        output_paths: list | None = None, refined_calibration_path: str | None = None,
        calibration_source: str = "board", max_shift: int = 3, window: int = 300, conf_threshold: float = 0.3,
        min_gain_px: float = 0.3, min_z: float = 6.0, item: str = "", log: logging.Logger | None = None) -> dict:
    from mck.sync import describe, detect_offsets

    log = log or logging.getLogger("mck")
    t0 = time.perf_counter()
    cameras = list(keypoints_paths)
    calib, calib_used = choose_calibration(calibration_path, refined_calibration_path, calibration_source, item)
    _, extrinsics, intrinsics = load_camera_params(calib, cameras)
    kps = {c: read_keypoints(p) for c, p in keypoints_paths.items() if p and os.path.isfile(p)}
    missing = [c for c in cameras if c not in kps]
    if missing:
        raise InputError(f"no keypoints for {', '.join(missing)}", item=item, fix="run step=hrnet for them first")
    alignment = read_alignment(alignment_path, cameras)
    lengths = [int(alignment[:, i].sum()) if alignment is not None else len(kps[c][0]) for i, c in enumerate(cameras)]
    uv, conf, note = stack_2d(kps, cameras, alignment)
    if note:       # the alignment file does not match the videos: compare frame by frame from frame 0
        uv, conf, _ = stack_2d(kps, cameras, None)
        lengths = [len(kps[c][0]) for c in cameras]
    if alignment is not None and not note:
        lengths = [len(uv)] * len(cameras)
    result = detect_offsets(uv, np.nan_to_num(conf), extrinsics, intrinsics, lengths=lengths, max_shift=max_shift,
                            window=window, conf_threshold=conf_threshold, min_gain_px=min_gain_px, min_z=min_z)
    for f in result["findings"]:
        f["camera_name"] = cameras[f["camera"]]
        f["message"] = describe(f, cameras[f["camera"]])
    result.update(session=item, ok=not result["findings"], camera_names=cameras,
                  alignment_file=alignment_path if alignment is not None else None, alignment_note=note or None,
                  calibration=calib_used, seconds=round(time.perf_counter() - t0, 2))
    for cam, entry in zip(cameras, result["cameras"]):
        entry["camera"] = cam
    paths = list(output_paths or [])
    png = paths[1] if len(paths) > 1 else str(output_path)[: -len(".json")] + ".png"
    _plot(png, result, item)
    save_json(output_path, result)
    for f in result["findings"]:
        log.warning("%s: %s", item, f["message"])
    if not result["findings"]:
        log.info("%s: cameras in sync (%d rows, windows of %d frames)", item, len(uv), result["window"])
    return {"ok": result["ok"], "findings": [f["message"] for f in result["findings"]], "rows": int(len(uv)),
            "seconds": result["seconds"]}


def _plot(path: str, result: dict, session: str) -> None:
    """Per camera: residual (px) vs shift (y) over time windows (x); the detected offset drawn on top."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cams = result["cameras"]
    fig = Figure(figsize=(10, 1.6 * len(cams) + 0.8))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(len(cams), 1, sharex=True))
    window = result["window"]
    for ax, cam in zip(axes, cams):
        scores = np.asarray(cam["scores"], float)                  # (W, S)
        shifts = cam["shifts"]
        if scores.size:
            ax.imshow(scores.T, aspect="auto", origin="lower", cmap="viridis_r",
                      extent=(0, scores.shape[0] * window, shifts[0] - 0.5, shifts[-1] + 0.5))
        for s in cam["segments"]:
            if s["offset"] is not None:
                ax.plot([s["start"], s["end"]], [s["offset"], s["offset"]], color="red", lw=1.5)
        ax.set_ylabel(f"{cam['camera']}\nshift", fontsize=8)
    axes[-1].set_xlabel("frame (row)")
    fig.suptitle(f"{session}: reprojection residual vs frame shift per camera (dark = fits; red = detected offset; "
                 f"in sync = red line at 0)", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
