"""Calibration QC: what a calibration's detections and solution say about its quality, as warnings with fixes.

Pure: arrays in, a JSON-ready dict out (``calibration_qc``). Per camera: frames with a detection, views used,
reprojection RMS after bundle adjustment, the fraction of the image covered by detected corners (cells of a
``grid`` × ``grid`` lattice), the range of board distances (mm) and tilts (° between the board normal and the line of
sight), the best time shift of its video against the others' board poses; per camera pair: frames both saw. Checks
(each failure is a warning ``{camera, check, message, fix}``):

* ``frames``: fewer than ``min_frames`` complete detections;
* ``coverage``: corners cover less than ``min_coverage`` of the image;
* ``tilt``: the board's tilt spans less than ``min_tilt_range_deg`` (focal length and principal point are poorly
  constrained);
* ``rms``: reprojection RMS above ``max_rms_px`` (or 3 × the median camera's);
* ``sync``: the camera's corners fit the others' board poses clearly better at a frame offset ≠ 0 (its video is
  shifted in time);
* ``few_frames_dominate``: the worst 5 % of the camera's views hold over half of its squared error;
* ``intrinsics``: focal length outside [0.3, 6] × image width, aspect fx/fy off by > 5 %, principal point more than
  20 % of the image from its centre;
* ``geometry``: the board's positions are not in front of the camera near its optical axis (a camera "on the wrong
  side" of the arena), or camera distances from the board outside ``camera_distance_mm`` (a wrong ``square_size``
  scales every distance: 1.25 for 12.5 mm puts the cameras at a tenth of their distance);
* ``pairs``: a camera shares fewer than ``min_shared`` frames with every other camera.
"""

from __future__ import annotations

import numpy as np

from mck.geometry.camera import project_camera, rodrigues


def _board_world(poses: np.ndarray, object_points: np.ndarray) -> np.ndarray:
    """(F, N, 3) world points of the board at poses (F, 6) board → world."""
    R = rodrigues(poses[:, :3])
    return np.einsum("fij,nj->fni", R, object_points) + poses[:, None, 3:]


def _coverage(uv: np.ndarray, size: tuple[int, int], grid: int) -> tuple[float, np.ndarray]:
    """Fraction of ``grid`` × ``grid`` image cells holding a corner, and the (grid, grid) counts."""
    width, height = size
    uv = uv[np.isfinite(uv).all(-1)]
    if not len(uv):
        return 0.0, np.zeros((grid, grid), int)
    i = np.clip((uv[:, 1] / height * grid).astype(int), 0, grid - 1)
    j = np.clip((uv[:, 0] / width * grid).astype(int), 0, grid - 1)
    counts = np.zeros((grid, grid), int)
    np.add.at(counts, (i, j), 1)
    return float((counts > 0).mean()), counts


def calibration_qc(corners: np.ndarray, names, image_sizes, extrinsics: np.ndarray, intrinsics, object_points,
                   board_poses: np.ndarray, frames: np.ndarray, views: np.ndarray | None = None, *,
                   min_frames: int = 30, min_coverage: float = 0.35, min_tilt_range_deg: float = 20.0,
                   max_rms_px: float = 1.0, min_shared: int = 10, grid: int = 8, max_shift: int = 5,
                   camera_distance_mm: tuple[float, float] = (150.0, 5000.0), rejected=None) -> dict:
    """QC of a calibration.

    ``corners`` (C, F, N, 2) px detections (NaN: none); ``names`` (C,); ``image_sizes`` [(w, h)]; ``extrinsics``
    (C, 6) world → camera; ``intrinsics`` [(K, dist)]; ``object_points`` (N, 3) mm; ``board_poses`` (F', 6) board →
    world of the frames ``frames`` (F',) (the bundle adjustment's); ``views`` (C, F) the views it used (default:
    every complete detection); ``rejected`` (C,) views the adjustment rejected as outliers (a camera losing over
    a third of its views gets a ``rejected`` warning). Returns {"ok", "warnings": [...], "cameras": {name: {...}}, "pairs": {...},
    "coverage_maps": {name: (grid, grid) counts}}.
    """
    names = [str(n) for n in names]
    C, F = corners.shape[:2]
    complete = np.isfinite(corners).all(axis=(2, 3))                       # (C, F)
    views = complete if views is None else np.asarray(views, bool) & complete
    frames = np.asarray(frames, int)
    poses_all = np.full((F, 6), np.nan)
    poses_all[frames] = board_poses
    world = _board_world(np.nan_to_num(poses_all), object_points)           # (F, N, 3)
    known = np.isfinite(poses_all).all(1)
    normal_w = rodrigues(np.nan_to_num(poses_all[:, :3]))[:, :, 2]         # (F, 3) board normal, world
    warnings, cameras, maps = [], {}, {}

    def warn(cam, check, message, fix):
        warnings.append({"camera": cam, "check": check, "message": f"{cam}: {message}", "fix": fix})

    rms_all = []
    for c, cam in enumerate(names):
        K, dist = intrinsics[c]
        K, dist = np.asarray(K, float), np.asarray(dist, float)
        width, height = image_sizes[c]
        rvec, t = extrinsics[c, :3], extrinsics[c, 3:]
        R = rodrigues(rvec)
        centre = -R.T @ t
        n_det = int(complete[c].sum())
        cov, counts = _coverage(corners[c][complete[c]].reshape(-1, 2), (width, height), grid)
        maps[cam] = counts.tolist()
        used = np.flatnonzero(views[c] & known)
        info = {"frames_detected": n_det, "views_used": int(len(used)), "coverage": round(cov, 3)}
        if len(used):
            pred = project_camera(world[used], rvec, t, K, dist)             # (V, N, 2)
            err = np.linalg.norm(pred - corners[c, used], axis=-1)           # (V, N)
            rms = float(np.sqrt(np.mean(err ** 2)))
            sq = np.sum(err ** 2, 1)
            worst = np.sort(sq)[::-1][:max(1, int(np.ceil(0.05 * len(sq))))]
            dominated = float(worst.sum() / max(sq.sum(), 1e-12))
            centroid = world[used].mean(1)                                   # (V, 3)
            sight = centre - centroid
            dist_mm = np.linalg.norm(sight, axis=1)
            tilt = np.degrees(np.arccos(np.clip(np.abs(np.sum(sight * normal_w[used], 1)) / dist_mm, 0, 1)))
            info.update(rms_px=round(rms, 4), distance_mm=[round(float(dist_mm.min()), 1),
                                                            round(float(dist_mm.max()), 1)],
                        tilt_deg=[round(float(tilt.min()), 1), round(float(tilt.max()), 1)],
                        worst_5pct_share=round(dominated, 3),
                        worst_views=[int(frames_v) for frames_v in used[np.argsort(sq)[::-1][:5]]])
            rms_all.append(rms)
            # time shift: corners at frame f against the board poses (solved from every camera) at f + s
            shifts = {}
            for s in range(-max_shift, max_shift + 1):
                f = np.flatnonzero(complete[c])
                f = f[(f + s >= 0) & (f + s < F)]
                f = f[known[f + s]]
                if len(f) < 5:
                    continue
                pred = project_camera(world[f + s], rvec, t, K, dist)
                shifts[s] = float(np.median(np.linalg.norm(pred - corners[c, f], axis=-1)))
            if shifts:
                best = min(shifts, key=shifts.get)
                info["best_shift_frames"] = int(best)
                info["error_by_shift_px"] = {str(k): round(v, 3) for k, v in shifts.items()}
                if best != 0 and 0 in shifts and shifts[best] < 0.6 * shifts[0]:
                    warn(cam, "sync", f"corners fit the board {best:+d} frames later ({shifts[best]:.2f} px) better "
                         f"than in the same frame ({shifts[0]:.2f} px): its video is shifted in time",
                         f"align {cam}'s video to the trigger (drop or pad {abs(best)} frames, or use an alignment "
                         f"file) and re-run the calibration")
            if dominated > 0.5 and len(sq) >= 10:
                warn(cam, "few_frames_dominate", f"the worst 5 % of views hold {dominated:.0%} of the squared "
                     f"reprojection error (frames {', '.join(map(str, info['worst_views']))})",
                     "look at those frames (reflections, a hand over the board, motion blur) and re-record or drop "
                     "them")
            if tilt.max() - tilt.min() < min_tilt_range_deg:
                warn(cam, "tilt", f"board tilt spans only {tilt.min():.0f}–{tilt.max():.0f}°",
                     f"tilt the board towards and away from {cam} (up to ~50°) while recording")
            # geometry: the board in front of the camera, near its optical axis
            cam_pts = centroid @ R.T + t
            ahead = cam_pts[:, 2] > 0
            off_axis = np.degrees(np.arctan2(np.linalg.norm(cam_pts[:, :2], axis=1), cam_pts[:, 2]))
            if ahead.mean() < 0.9 or np.median(off_axis) > 60:
                warn(cam, "geometry", f"the board is behind or far off the optical axis in "
                     f"{(~ahead).mean():.0%} of its views (median {np.median(off_axis):.0f}° off axis): the camera "
                     f"is on the wrong side of the arena", "check the camera order/names and the board detections "
                     "(a mirrored ordering), then re-run")
            lo_mm, hi_mm = camera_distance_mm
            med = float(np.median(dist_mm))
            info["median_distance_mm"] = round(med, 1)
            if not lo_mm <= med <= hi_mm:
                warn(cam, "geometry", f"median camera–board distance {med:.0f} mm is outside the plausible "
                     f"{lo_mm:.0f}–{hi_mm:.0f} mm", "check square_size (mm per square, 12.5 for the lab's board; "
                     "a value in cm or inches scales every distance)")
        else:
            info.update(rms_px=None)
        cameras[cam] = info
        if rejected is not None:
            info["views_rejected"] = int(rejected[c])
            if n_det and rejected[c] > max(5, n_det / 3):
                warn(cam, "rejected", f"{int(rejected[c])} of {n_det} board views rejected as outliers by the "
                     f"bundle adjustment", f"check {cam}'s synchronisation and detections (wrong corner order, "
                     f"reflections)")
        if n_det < min_frames or cov < min_coverage:
            warn(cam, "frames" if n_det < min_frames else "coverage",
                 f"board in {n_det} frames covering {cov:.0%} of the image",
                 f"move the board through {cam}'s corners and edges"
                 + (f", {min_frames} frames or more" if n_det < min_frames else ""))
        # intrinsics plausibility
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        problems = []
        if not 0.3 * width <= fx <= 6 * width:
            problems.append(f"focal length {fx:.0f} px for a {width} px wide image")
        if abs(fx / fy - 1) > 0.05:
            problems.append(f"fx/fy = {fx / fy:.3f}")
        if abs(cx - width / 2) > 0.2 * width or abs(cy - height / 2) > 0.2 * height:
            problems.append(f"principal point ({cx:.0f}, {cy:.0f}) far from the image centre")
        info["focal_px"] = [round(float(fx), 2), round(float(fy), 2)]
        info["principal_point_px"] = [round(float(cx), 2), round(float(cy), 2)]
        if problems:
            warn(cam, "intrinsics", "; ".join(problems),
                 f"record more, more varied views of the board in {cam} (tilted, near the image corners)")
    median_rms = float(np.median(rms_all)) if rms_all else 0.0
    for c, cam in enumerate(names):
        rms = cameras[cam].get("rms_px")
        if rms is not None and rms > max(max_rms_px, 3 * median_rms):
            warn(cam, "rms", f"reprojection RMS {rms:.2f} px (median camera {median_rms:.2f} px)",
                 f"check {cam}'s synchronisation and its detections (residual figure), then re-run")
    pairs = {}
    shared = (complete[:, None] & complete[None]).sum(-1)
    for a in range(C):
        for b in range(a + 1, C):
            pairs[f"{names[a]}-{names[b]}"] = int(shared[a, b])
    for c, cam in enumerate(names):
        others = np.delete(shared[c], c)
        cameras[cam]["max_shared_frames"] = int(others.max()) if len(others) else 0
        if len(others) and others.max() < min_shared:
            warn(cam, "pairs", f"shares at most {others.max()} frames with any other camera",
                 f"hold the board where {cam} and a neighbouring camera both see it")
    return {"ok": not warnings, "warnings": warnings, "cameras": cameras, "pairs": pairs, "coverage_maps": maps,
            "grid": grid}


def failed_checks(qc: dict) -> list[str]:
    """One line per warning of a QC dict (``message: fix``)."""
    return [f"{w['message']} ({w['fix']})" for w in qc.get("warnings", [])]
