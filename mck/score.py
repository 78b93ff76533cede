"""Score a synthetic project's outputs against its ground truth: ``python -m mck.score ROOT [OUTPUT_ROOT]``.

Reads ``ROOT/ground_truth/`` (written by ``python -m mck synth``) and whatever stage outputs exist under the
output root (default ``ROOT``: outputs beside the videos, as in ``conf/project/demo.yaml``), prints one table and
writes the same numbers to ``ROOT/score.json`` (atomically). A stage without outputs scores as "—" (JSON null).

Everything is compared in the frame of the root (first, ``top``) camera, as the pipeline's world frame is defined:
ground truth through the true root camera, estimates through the estimated one — so the 3D errors include the
calibration's errors, as a user would see them.

- calibration: per camera, the camera centre error (mm), focal length error (%, mean of fx, fy) and the RMS (px)
  between the ground-truth 3D keypoints projected through the estimated and through the true camera.
- centernet: per camera, the median distance (px) of ``{video}.centroid.npy`` to the true 2D centroid.
- hrnet: the distance (px) of ``{video}.keypoints.h5`` ``uv`` to the true 2D keypoints on keypoints visible in
  that camera; median / mean / p95 per view type (camera name without its digits).
- triangulation: ``{session}.robust_triangulation.npy`` vs the true 3D keypoints: median / mean / p95 (mm) on
  triangulated keypoints, and the fraction triangulated.
- gimbal: ``{session}.gimbal.npy`` (T, 14, 3) in GIMBAL node order (``mck.skeleton.MOUSE.node_order`` indexes the
  14 use-bodyparts = HRNet keypoints 1..14) vs the true 3D keypoints, as for triangulation; and both on the same
  points (GIMBAL's 14 keypoints where triangulation has an estimate), the fair comparison, pooled and per keypoint
  (a pooled median mixes keypoints of very different accuracy, so it can move against most per-keypoint medians).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mck.errors import InputError

DASH = "—"


# ---------------------------------------------------------------- helpers

def _stats(errors: np.ndarray) -> dict[str, Any] | None:
    e = np.asarray(errors, dtype=float).ravel()
    e = e[np.isfinite(e)]
    if e.size == 0:
        return None
    return {"median": float(np.median(e)), "mean": float(e.mean()), "p95": float(np.percentile(e, 95)),
            "n": int(e.size)}


def _rotations(extrinsics: np.ndarray) -> np.ndarray:
    from mck.geometry import rodrigues

    return rodrigues(extrinsics[:, :3])


def _to_root(points: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """World points (..., 3) → the root camera's frame (camera 0 of ``extrinsics``)."""
    R0 = _rotations(extrinsics[:1])[0]
    return points @ R0.T + extrinsics[0, 3:]


def _from_root(points: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Points in the root camera's frame → world points of ``extrinsics``."""
    R0 = _rotations(extrinsics[:1])[0]
    return (points - extrinsics[0, 3:]) @ R0


def _camera_centres_root(extrinsics: np.ndarray) -> np.ndarray:
    R = _rotations(extrinsics)
    centres = -np.einsum("cji,cj->ci", R, extrinsics[:, 3:])   # −Rᵀ t
    return _to_root(centres, extrinsics)


def _view(camera: str) -> str:
    return re.sub(r"\d+$", "", camera)


def _manifest(root: Path) -> dict:
    gt = root / "ground_truth"
    path = gt / "manifest.json"
    if path.is_file():
        with open(path) as f:
            manifest = json.load(f)
    else:
        manifest = {}
    if not manifest.get("sessions"):
        manifest["sessions"] = sorted(p.name[: -len(".keypoints3d.npy")] for p in gt.glob("*.keypoints3d.npy"))
    return manifest


# ---------------------------------------------------------------- stages

def score_calibration(root: Path, output_root: Path, gt: dict[str, dict]) -> dict | None:
    from mck.calibration_io import load_camera_params

    truth_path = root / "ground_truth" / "camera_params.h5"
    found = sorted(output_root.glob("*/*.camera_params.h5"))
    if not found or not truth_path.is_file():
        return None
    names, true_ext, true_int = load_camera_params(truth_path)
    points = np.concatenate([g["keypoints3d"].reshape(-1, 3) for g in gt.values()]) if gt else np.zeros((0, 3))
    points = points[np.isfinite(points).all(-1)]
    true_root = _to_root(points, true_ext)
    result: dict[str, Any] = {}
    for path in found:
        _, est_ext, est_int = load_camera_params(path, names)
        centre_err = np.linalg.norm(_camera_centres_root(est_ext) - _camera_centres_root(true_ext), axis=-1)
        per_camera = {}
        for c, cam in enumerate(names):
            f_est = np.array([est_int[c][0][0, 0], est_int[c][0][1, 1]])
            f_true = np.array([true_int[c][0][0, 0], true_int[c][0][1, 1]])
            rms = None
            if len(points):
                from mck.geometry import project_camera

                uv_true = project_camera(points, true_ext[c, :3], true_ext[c, 3:], *true_int[c])
                uv_est = project_camera(_from_root(true_root, est_ext), est_ext[c, :3], est_ext[c, 3:], *est_int[c])
                d2 = np.sum((uv_est - uv_true) ** 2, axis=-1)
                rms = float(np.sqrt(np.mean(d2[np.isfinite(d2)]))) if np.isfinite(d2).any() else None
            per_camera[cam] = {"centre_error_mm": float(centre_err[c]),
                               "focal_error_pct": float(np.mean(np.abs(f_est - f_true) / f_true) * 100),
                               "reprojection_rms_px": rms}
        item = path.name[: -len(".camera_params.h5")]
        result[item] = {
            "per_camera": per_camera,
            "max_centre_error_mm": float(centre_err.max()),
            "max_focal_error_pct": max(v["focal_error_pct"] for v in per_camera.values()),
            "max_reprojection_rms_px": max((v["reprojection_rms_px"] for v in per_camera.values()
                                            if v["reprojection_rms_px"] is not None), default=None),
        }
    return result


def _video_rows(g: dict, c: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Trigger rows with a frame of camera ``c`` that exists in an output of ``n_rows`` rows, and those frames."""
    frames = g["frames"][:, c] if "frames" in g else np.arange(len(g["keypoints3d"]))
    rows = np.flatnonzero((frames >= 0) & (frames < n_rows))
    return rows, frames[rows]


def _video_outputs(output_root: Path, gt: dict[str, dict], suffix: str):
    """``(session, ground truth, camera index, camera name, path)`` of every ``{session}.{camera}.{suffix}`` that
    exists."""
    for session, g in gt.items():
        for c, cam in enumerate(g["cameras"]):
            path = output_root / session / f"{session}.{cam}.{suffix}"
            if path.is_file():
                yield session, g, c, str(cam), path


def _grouped_stats(errors: dict[str, list[np.ndarray]]) -> tuple[dict[str, dict | None], dict | None]:
    """Stats per group of error arrays, and over all of them."""
    return ({group: _stats(np.concatenate(e)) for group, e in errors.items()},
            _stats(np.concatenate([np.concatenate(e) for e in errors.values()])))


def score_centernet(output_root: Path, gt: dict[str, dict]) -> dict | None:
    errors: dict[str, list[np.ndarray]] = {}
    for _, g, c, cam, path in _video_outputs(output_root, gt, "centroid.npy"):
        pred = np.load(path).astype(float)
        rows, frames = _video_rows(g, c, len(pred))
        errors.setdefault(cam, []).append(np.linalg.norm(pred[frames] - g["centroid"][rows, c], axis=-1))
    if not errors:
        return None
    per_camera, everything = _grouped_stats(errors)
    return {"per_camera_median_px": {cam: s and s["median"] for cam, s in per_camera.items()}, "all": everything}


def score_hrnet(output_root: Path, gt: dict[str, dict]) -> dict | None:
    from mck.keypoints_io import load_keypoints

    errors: dict[str, list[np.ndarray]] = {}
    for session, g, c, cam, path in _video_outputs(output_root, gt, "keypoints.h5"):
        uv, _ = load_keypoints(path, item=f"{session}.{cam}")
        rows, frames = _video_rows(g, c, len(uv))
        d = np.linalg.norm(uv[frames] - g["uv"][rows, c], axis=-1)       # (n, 15)
        errors.setdefault(_view(cam), []).append(d[g["visible"][rows, c]])
    if not errors:
        return None
    per_view, everything = _grouped_stats(errors)
    return {"per_view": per_view, "all": everything}


def _errors_3d(output_root: Path, gt: dict[str, dict], est_ext: dict[str, np.ndarray | None], name: str,
               columns: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per session, the 3D error (T, K) mm (root-camera frame, NaN = no estimate) of ``{session}.{name}`` vs the
    truth; ``columns`` maps its keypoints to HRNet's."""
    out = {}
    for session, g in gt.items():
        path = output_root / session / f"{session}.{name}"
        if not path.is_file():
            continue
        pred = np.load(path).astype(float)
        truth = g["keypoints3d"]
        idx = np.arange(pred.shape[1]) if columns is None else columns
        n = min(len(pred), len(truth))
        pred, truth = pred[:n], truth[:n][:, idx]
        if est_ext.get(session) is not None:
            pred = _to_root(pred, est_ext[session])
        truth = _to_root(truth, g["true_extrinsics"]) if g.get("true_extrinsics") is not None else truth
        out[session] = np.linalg.norm(pred - truth, axis=-1)
    return out


def _summarise_3d(errors: dict[str, np.ndarray]) -> dict | None:
    """median / mean / p95 (mm) over the finite errors, the fraction finite, and the same per session."""
    if not errors:
        return None
    per_session = {}
    for session, d in errors.items():
        s = _stats(d)
        per_session[session] = None if s is None else {**s, "fraction": float(np.isfinite(d).mean())}
    flat = np.concatenate([d.ravel() for d in errors.values()])
    s = _stats(flat) or {"median": None, "mean": None, "p95": None, "n": 0}
    return {"median_mm": s["median"], "mean_mm": s["mean"], "p95_mm": s["p95"], "n": s["n"],
            "fraction_triangulated": float(np.isfinite(flat).mean()), "per_session": per_session}


def _compare(triangulation: dict[str, np.ndarray], gimbal: dict[str, np.ndarray], columns: np.ndarray) -> dict | None:
    """Both on the same points: GIMBAL's 14 keypoints where triangulation has an estimate (GIMBAL also fills the
    rest, which triangulation cannot be scored on)."""
    pairs = [(triangulation[s][: len(gimbal[s]), columns], gimbal[s][: len(triangulation[s])])
             for s in gimbal if s in triangulation]
    if not pairs:
        return None
    tri = np.concatenate([t for t, _ in pairs])                        # (T, 14)
    gim = np.concatenate([g for _, g in pairs])
    common = np.isfinite(tri) & np.isfinite(gim)
    per_keypoint = []
    for k in range(tri.shape[1]):
        t, g = _stats(tri[common[:, k], k]), _stats(gim[common[:, k], k])
        if t and g:
            per_keypoint.append({"keypoint": int(columns[k]), "triangulation_median": t["median"],
                                 "gimbal_median": g["median"]})
    return {"triangulation": _stats(tri[common]), "gimbal": _stats(gim[common]), "per_keypoint": per_keypoint,
            "keypoints_gimbal_better": sum(k["gimbal_median"] < k["triangulation_median"] for k in per_keypoint)}


def _session_extrinsics(output_root: Path, sessions: list[str], cameras: list[str]) -> dict[str, np.ndarray | None]:
    """The estimated calibration each session was triangulated with (its ``triangulation.h5`` does not say, so:
    the only calibration, or the one whose name starts with the session's date)."""
    from mck.calibration_io import load_camera_params

    found = sorted(output_root.glob("*/*.camera_params.h5"))
    out: dict[str, np.ndarray | None] = {}
    for session in sessions:
        match = [p for p in found if p.name[:8] == session[:8]] or (found if len(found) == 1 else [])
        out[session] = load_camera_params(match[0], cameras)[1] if match else None
    return out


# ---------------------------------------------------------------- project

def score_project(root: str | Path, output_root: str | Path | None = None) -> dict[str, Any]:
    """Every stage's score (None where the stage has no outputs)."""
    from mck.calibration_io import load_camera_params
    from mck.skeleton import MOUSE
    from mck.synth import load_ground_truth

    root = Path(root)
    output_root = Path(output_root) if output_root else root
    if not (root / "ground_truth").is_dir():
        raise InputError("no ground_truth/ folder: not a synthetic project", path=str(root),
                         fix="score a folder written by `python -m mck synth` or `python -m mck demo`")
    manifest = _manifest(root)
    gt = {s: load_ground_truth(root, s) for s in manifest["sessions"]}
    truth_path = root / "ground_truth" / "camera_params.h5"
    cameras = [str(c) for c in next(iter(gt.values()))["cameras"]] if gt else list(manifest.get("cameras", []))
    true_ext = load_camera_params(truth_path, cameras)[1] if truth_path.is_file() and cameras else None
    for g in gt.values():
        g["true_extrinsics"] = true_ext
    est_ext = _session_extrinsics(output_root, list(gt), cameras) if cameras else {}
    columns = np.asarray(MOUSE.node_order) + 1
    triangulation = _errors_3d(output_root, gt, est_ext, "robust_triangulation.npy")
    gimbal = _errors_3d(output_root, gt, est_ext, "gimbal.npy", columns=columns)
    return {
        "root": str(root),
        "sessions": list(gt),
        "calibration": score_calibration(root, output_root, gt),
        "centernet": score_centernet(output_root, gt),
        "hrnet": score_hrnet(output_root, gt),
        "triangulation": _summarise_3d(triangulation),
        "gimbal": _summarise_3d(gimbal),
        "same_points": _compare(triangulation, gimbal, columns),
    }


def _fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return DASH
    return f"{value:.{digits}f}{unit}"


def format_table(scores: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    calibration = scores.get("calibration")
    if not calibration:
        rows.append(("calibration", "", DASH))
    else:
        for item, cal in calibration.items():
            for cam, v in cal["per_camera"].items():
                rows.append((f"calibration {item}" if cam == next(iter(cal["per_camera"])) else "", cam,
                             f"centre {_fmt(v['centre_error_mm'], 1)} mm, focal {_fmt(v['focal_error_pct'], 2)} %, "
                             f"reprojection RMS {_fmt(v['reprojection_rms_px'], 2)} px"))
    centernet = scores.get("centernet")
    if not centernet:
        rows.append(("centernet", "", DASH))
    else:
        per = centernet["per_camera_median_px"]
        rows.append(("centernet", "median centroid error px",
                     ", ".join(f"{cam} {_fmt(v, 1)}" for cam, v in per.items())))
    hrnet = scores.get("hrnet")
    if not hrnet:
        rows.append(("hrnet", "", DASH))
    else:
        for i, (view, s) in enumerate([*hrnet["per_view"].items(), ("all", hrnet["all"])]):
            rows.append(("hrnet" if i == 0 else "", f"{view} px (visible kp)", DASH if not s else
                         f"median {_fmt(s['median'])}, mean {_fmt(s['mean'])}, p95 {_fmt(s['p95'])} (n={s['n']})"))
    for stage in ("triangulation", "gimbal"):
        s = scores.get(stage)
        rows.append((stage, "3D error mm" if s else "", DASH if not s else
                     f"median {_fmt(s['median_mm'])}, mean {_fmt(s['mean_mm'])}, p95 {_fmt(s['p95_mm'])}, "
                     f"triangulated {_fmt(100 * s['fraction_triangulated'], 1)} %"))
    same = scores.get("same_points")
    if same and same["triangulation"] and same["gimbal"]:
        t, g = same["triangulation"], same["gimbal"]
        rows.append(("gimbal vs triangulation", "same points mm",
                     f"median {_fmt(g['median'])} vs {_fmt(t['median'])}, mean {_fmt(g['mean'])} vs "
                     f"{_fmt(t['mean'])}, p95 {_fmt(g['p95'])} vs {_fmt(t['p95'])} (n={g['n']})"))
        rows.append(("", "per keypoint", f"GIMBAL's median is lower on {same['keypoints_gimbal_better']} of "
                                         f"{len(same['per_keypoint'])} keypoints"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'stage':<{w0}}  {'':<{w1}}  score vs ground truth", "-" * (w0 + w1 + 60)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from mck.errors import MckError
    from mck.io import save_json

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or len(argv) > 2 or argv[0] in ("-h", "--help"):
        print("usage: python -m mck.score PROJECT_ROOT [OUTPUT_ROOT]", file=sys.stderr)
        return 2
    try:
        scores = score_project(argv[0], argv[1] if len(argv) > 1 else None)
    except MckError as exc:
        print(f"mck score: error: {exc.one_line()}", file=sys.stderr)
        return 1
    print(format_table(scores))
    save_json(Path(argv[0]) / "score.json", scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
