"""Step ``calibration`` (calibration level): chessboard videos → ``{calibration}.camera_params.h5``.

1. Detect the anchored chessboard in every video (frames decoded in a background reader, videos in parallel
   processes); each video's detections are cached in ``{calibration}.{camera}.detections.h5`` (the lab's layout:
   ``uvs``, ``frame_ixs``, ``img_size``, ``qc_data``) so a re-run or a resumed job skips finished videos; a cache
   whose video (size, mtime), detector version or options changed is redone.
2. Initial calibration, then bundle adjustment with outlier-view rejection; the **adjusted** parameters are saved
   (the lab saved the initial ones, docs/algorithms.md §A.1). A video with too few detections is a one-line error naming
   it.
3. QC: per-camera reprojection residual histograms (``{calibration}.residuals.png``), detected-corner coverage
   maps (``{calibration}.coverage.png``) and the checks of ``mck.calibration.qc`` (frames, coverage, tilt range,
   RMS, time shift, intrinsics and geometry plausibility, shared frames) in ``{calibration}.calibration_qc.json``
   beside the camera file; each failed check is logged as a warning with its fix. A calibration with failed checks
   is still written.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mck.errors import InputError, StepError

MIN_DETECTIONS = 10


def detect_video(video_path: str, board_shape: tuple[int, int], frame_step: int = 1,
                 max_frames: int | None = None, thorough: bool = False) -> dict:
    """Detections of one video: uvs (n, N, 2), frame_ixs (n,), img_size (w, h), qc_data (n, 4), frames read.
    Every detection is verified (grid fit, square parity, printed margin, unambiguous anchor dot)."""
    from mck.calibration.detect import detect_chessboard_scored
    from mck.video import iter_frames, video_info

    info = video_info(video_path)
    uvs, frames, scores = [], [], []
    n = 0
    for index, frame in enumerate(iter_frames(video_path, 0, max_frames)):
        n += 1
        if index % frame_step:
            continue
        result = detect_chessboard_scored(frame, tuple(board_shape), thorough=thorough)
        if result is not None:
            uvs.append(result[0])
            frames.append(index)
            scores.append(result[1])
    points = board_shape[0] * board_shape[1]
    return {"uvs": np.array(uvs, dtype=np.float32).reshape(-1, points, 2), "frame_ixs": np.array(frames, dtype=int),
            "img_size": np.array([info.width, info.height]), "qc_data": np.array(scores).reshape(-1, 4),
            "frames": n}


def _detect_to_cache(args) -> str:
    from mck.io import save_h5

    video_path, cache_path, board_shape, frame_step, thorough = args
    det = detect_video(video_path, board_shape, frame_step, thorough=thorough)
    save_h5(cache_path, {k: det[k] for k in ("uvs", "frame_ixs", "img_size", "qc_data")},
            attrs={"frames": det["frames"], **_cache_key(video_path, board_shape, frame_step, thorough)})
    return cache_path


def _cache_key(video_path: str, board_shape, frame_step: int, thorough: bool) -> dict:
    """What a cached detections file depends on: the video (size, mtime), the detector and its options."""
    from mck.calibration.detect import DETECTOR_VERSION

    st = os.stat(video_path)
    return {"frame_step": int(frame_step), "detector_version": DETECTOR_VERSION, "thorough": bool(thorough),
            "board_shape": f"{board_shape[0]}x{board_shape[1]}", "video_bytes": int(st.st_size),
            "video_mtime_ns": int(st.st_mtime_ns)}


def _cache_valid(cache_path: str, key: dict) -> bool:
    import h5py

    if not os.path.exists(cache_path):
        return False
    try:
        with h5py.File(cache_path, "r") as f:
            attrs = {k: f.attrs[k] for k in key if k in f.attrs}
    except OSError:
        return False
    return all(k in attrs and (attrs[k].decode() if isinstance(attrs[k], bytes) else attrs[k]) == v
               for k, v in key.items())


def _load_cache(path: str) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("uvs", "frame_ixs", "img_size")} | {"frames": int(f.attrs["frames"])}


def run(video_paths: dict, board_shape: list, square_size: float, output_path: str, item: str = "",
        frame_step: int = 1, n_frames_intrinsics: int = 100, n_frames_bundle: int = 5000, ftol: float = 1e-4,
        seed: int = 0, workers: int = 0, thorough: bool = False, outlier_px: float = 1.0,
        qc: dict | None = None, log: logging.Logger | None = None) -> dict:
    from mck.calibration import bundle_adjust, calibrate
    from mck.calibration_io import calibration_qc_path, save_camera_params
    from mck.synth.board import object_points

    log = log or logging.getLogger("mck")
    cameras = list(video_paths)
    board_shape = (int(board_shape[0]), int(board_shape[1]))
    out_dir = Path(output_path).parent
    caches = {cam: str(out_dir / f"{item}.{cam}.detections.h5") for cam in cameras}
    todo = [(video_paths[c], caches[c], board_shape, frame_step, thorough) for c in cameras
            if not _cache_valid(caches[c], _cache_key(video_paths[c], board_shape, frame_step, thorough))]
    if todo:
        workers = workers or min(len(todo), os.cpu_count() or 1)
        log.info("%s: detecting the chessboard in %d videos (%d workers)", item, len(todo), workers)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_detect_to_cache, todo))
        else:
            for args in todo:
                _detect_to_cache(args)
    detections = {cam: _load_cache(caches[cam]) for cam in cameras}
    counts = {cam: len(d["frame_ixs"]) for cam, d in detections.items()}
    few = {cam: n for cam, n in counts.items() if n < MIN_DETECTIONS}
    if few:
        what = "; ".join(f"{Path(video_paths[c]).name}: {n} chessboard detections in {detections[c]['frames']} frames"
                         for c, n in few.items())
        raise InputError(f"{what} (need {MIN_DETECTIONS} per camera)", item=item,
                         fix=f"record the {board_shape[0]}x{board_shape[1]} board with its anchor dot in full view of "
                             f"{'that camera' if len(few) == 1 else 'those cameras'}, in focus and lit, "
                             f"and re-run")
    n_frames = max(d["frames"] for d in detections.values())
    points = board_shape[0] * board_shape[1]
    corners = np.full((len(cameras), n_frames, points, 2), np.nan)
    for c, cam in enumerate(cameras):
        corners[c, detections[cam]["frame_ixs"]] = detections[cam]["uvs"]
    obj = object_points(board_shape, float(square_size))
    sizes = [tuple(int(v) for v in detections[cam]["img_size"]) for cam in cameras]
    try:
        extrinsics, intrinsics, poses, init_rms = calibrate(corners, obj, sizes, 0, n_frames_intrinsics, seed,
                                                            names=cameras)
        try:
            result = bundle_adjust(corners, extrinsics, intrinsics, obj, poses, 0, n_frames_bundle, ftol, seed=seed,
                                   outlier_px=outlier_px, names=cameras)
        except ValueError as exc:           # a camera lost every view (out of sync, wrong order): keep them all, so
            if "no board view left" not in str(exc):     # the calibration is written and QC names the problem
                raise
            log.warning("%s: %s; adjusting without outlier rejection so that QC can say why", item, exc)
            result = bundle_adjust(corners, extrinsics, intrinsics, obj, poses, 0, n_frames_bundle, ftol, seed=seed,
                                   outlier_threshold=1e9, outlier_px=1e9, names=cameras)
    except ValueError as exc:
        raise StepError(str(exc), item=item, fix="record board poses that pairs of cameras see together") from exc
    save_camera_params(output_path, cameras, result.extrinsics, result.intrinsics)
    _residual_plot(out_dir / f"{item}.residuals.png", cameras, result.residuals_px)
    rms = {cam: round(float(r), 4) for cam, r in zip(cameras, result.rms_px)}
    log.info("%s: bundle adjustment %s; RMS px %s", item, result.message, rms)
    findings = _quality_check(corners, cameras, sizes, result, obj, qc or {}, calibration_qc_path(output_path), item, log)
    return {"qc_ok": findings["ok"], "qc_warnings": len(findings["warnings"]),"detections": counts, "frames_used": int(len(result.frames)), "rms_px": rms,
            "views_used": {cam: int(n) for cam, n in zip(cameras, result.views.sum(1))},
            "views_rejected": {cam: int(n) for cam, n in zip(cameras, result.rejected)},
            "initial_rms_px": {c: round(r, 4) for c, r in zip(cameras, init_rms)}, "converged": result.success}


def _quality_check(corners, cameras, sizes, result, obj, settings: dict, path: Path, item: str, log) -> dict:
    from mck.calibration.qc import calibration_qc
    from mck.io import save_json

    settings = dict(settings)
    if "camera_distance_mm" in settings and settings["camera_distance_mm"] is not None:
        settings["camera_distance_mm"] = tuple(float(v) for v in settings["camera_distance_mm"])
    findings = calibration_qc(corners, cameras, sizes, result.extrinsics, result.intrinsics, obj,
                              result.board_poses, result.frames, result.views, rejected=result.rejected,
                              **{k: v for k, v in settings.items() if v is not None})
    save_json(path, findings)
    for w in findings["warnings"]:
        log.warning("%s: calibration QC: %s (%s)", item, w["message"], w["fix"])
    if findings["ok"]:
        log.info("%s: calibration QC: all checks passed", item)
    _coverage_plot(path.with_name(path.name.replace(".calibration_qc.json", ".coverage.png")), cameras, sizes,
                   corners, findings)
    return findings


def _coverage_plot(path: Path, cameras, sizes, corners, findings: dict) -> None:
    """Per camera: detected corners over the image, cells of the QC grid with a corner shaded; title with the
    frames, coverage, RMS and any warning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mck.io import atomic_path

    fig, axes = plt.subplots(1, len(cameras), figsize=(3 * len(cameras), 2.9))
    warned = {w["camera"] for w in findings["warnings"]}
    for ax, cam, (width, height), uv in zip(np.atleast_1d(axes), cameras, sizes, corners):
        counts = np.asarray(findings["coverage_maps"][cam])
        ax.imshow(counts > 0, extent=(0, width, height, 0), cmap="Greens", vmin=0, vmax=2, alpha=0.6)
        pts = uv[np.isfinite(uv).all(-1)]
        ax.plot(pts[:, 0], pts[:, 1], ",", color="0.2")
        info = findings["cameras"][cam]
        rms = info.get("rms_px")
        ax.set_title(f"{cam}: {info['frames_detected']} frames, {info['coverage']:.0%} covered"
                     f"{'' if rms is None else f', {rms:.2f} px'}", fontsize=8, color="red" if cam in warned else "k")
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Calibration coverage: detected corners (dots), image cells with a corner (green); "
                 "red title = a QC warning (see calibration_qc.json)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _residual_plot(path: Path, cameras, residuals) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mck.io import atomic_path

    fig, axes = plt.subplots(1, len(cameras), figsize=(3 * len(cameras), 2.6), sharey=True)
    for ax, cam, res in zip(np.atleast_1d(axes), cameras, residuals):
        ax.hist(res, bins=np.linspace(0, max(1.0, np.percentile(res, 99) if len(res) else 1), 40), color="0.3")
        rms = np.sqrt(np.mean(res ** 2)) if len(res) else float("nan")
        ax.set_title(f"{cam}: RMS {rms:.2f} px", fontsize=9)
        ax.set_xlabel("reprojection error (px)")
    np.atleast_1d(axes)[0].set_ylabel("corners")
    fig.suptitle("Calibration residuals after bundle adjustment — good: RMS < 0.5 px, no long tail", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
