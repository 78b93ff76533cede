"""Benchmark: calibration refinement on the animal's keypoints (issue 21).

Demo-like detections without rendering (``mck.synth.detections``: the synthetic animal's 15 keypoints projected
through the synthetic rig, 1.5 px noise, 3 % gross outliers, 10 % missing views, off-image points dropped); the
true calibration perturbed (every camera but the first 1–3° and 5–10 mm, one camera by 10°). Then

* ``mck``: :func:`mck.calibration.refine_extrinsics` (camera poses, camera 0 fixed, scale kept);
* ``aniposelib``: ``CameraGroup.bundle_adjust_iter(only_extrinsics=True)`` of aniposelib 0.8 on the same
  detections (confidence ≥ 0.5), when importable (``make bench-deps``); skipped with a message otherwise;

and for the true, the perturbed and each refined calibration: reprojection error (median / mean px of every
observation against mck's robust triangulation), 3D error (median mm of the triangulated keypoints vs the truth,
as is and after the best similarity alignment — aniposelib does not hold the world frame), camera angle error and
seconds. Ratios are to the true calibration.

    .venv/bin/python benchmarks/bench_refine.py [--frames 3000] [--seed 0] [--big-camera 3] [--no-anipose]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mck.calibration import refine_extrinsics
from mck.geometry import reprojection_errors, rodrigues, triangulate
from mck.synth.detections import make_detections, perturb_extrinsics


def angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    R, Q = rodrigues(a[:, :3]), rodrigues(b[:, :3])
    return np.degrees(np.arccos(np.clip((np.trace(R @ np.swapaxes(Q, 1, 2), axis1=1, axis2=2) - 1) / 2, -1, 1)))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama: the similarity transform of ``src`` (N, 3) closest to ``dst``, applied to ``src``."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, S, Vt = np.linalg.svd(b.T @ a / len(a))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / a.var(0).sum()
    return s * a @ R.T + md


def evaluate(uv, conf, points, ext, intr, threshold=0.5) -> dict:
    u = np.where((conf >= threshold)[..., None], uv, np.nan)
    X = triangulate(u, ext, intr, conf=np.where(conf >= threshold, conf, 0.0))
    err = reprojection_errors(X, u, ext, intr)
    ok = np.isfinite(X).all(-1)
    d = np.linalg.norm(X[ok] - points[ok], axis=-1)
    d_aligned = np.linalg.norm(similarity(X[ok], points[ok]) - points[ok], axis=-1)
    e = err[np.isfinite(err)]
    return {"median_px": float(np.median(e)), "mean_px": float(np.mean(e)), "mm": float(np.median(d)),
            "mm_aligned": float(np.median(d_aligned))}


def run_aniposelib(uv, conf, ext, intr, size, names, threshold=0.5):
    try:
        from aniposelib.cameras import Camera, CameraGroup
    except ImportError as exc:
        print(f"aniposelib baseline skipped: {exc} (run `make bench-deps` to install aniposelib 0.8)")
        return None
    cams = [Camera(name=n, size=size, matrix=K, dist=d, rvec=e[:3], tvec=e[3:]) for n, e, (K, d) in
            zip(names, ext, intr)]
    group = CameraGroup(cams)
    T, C, K, _ = uv.shape
    p2ds = np.where((conf >= threshold)[..., None], uv, np.nan)
    p2ds = np.moveaxis(p2ds, 1, 0).reshape(C, T * K, 2)
    t0 = time.perf_counter()
    group.bundle_adjust_iter(p2ds, only_extrinsics=True, verbose=False)
    seconds = time.perf_counter() - t0
    new_ext = np.stack([np.r_[np.ravel(c.get_rotation()), np.ravel(c.get_translation())] for c in group.cameras])
    return new_ext, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--big-camera", type=int, default=3)
    parser.add_argument("--no-anipose", action="store_true")
    args = parser.parse_args(argv)
    det = make_detections(frames=args.frames, seed=args.seed)
    rig = det.rig
    start = perturb_extrinsics(rig.extrinsics, seed=args.seed + 1, big_camera=args.big_camera)
    n2d = int(np.isfinite(det.uv).all(-1).sum())
    print(f"bench_refine: {args.frames} frames × {len(rig.names)} cameras × 15 keypoints, {n2d} 2D detections; "
          f"start: cameras off by {', '.join(f'{a:.1f}' for a in angles(start, rig.extrinsics)[1:])}°")
    rows = {"true": (rig.extrinsics, None), "perturbed": (start, None)}
    t0 = time.perf_counter()
    ext, intr, info = refine_extrinsics(det.uv, start, rig.intrinsics, det.conf)
    rows["mck refine_extrinsics"] = (ext, time.perf_counter() - t0)
    if not args.no_anipose:
        result = run_aniposelib(det.uv, det.conf, start, rig.intrinsics, rig.size, rig.names)
        if result is not None:
            rows["aniposelib bundle_adjust_iter"] = result
    scores = {name: evaluate(det.uv, det.conf, det.points, e, rig.intrinsics) for name, (e, _) in rows.items()}
    truth = scores["true"]
    header = (f"{'calibration':<30} {'median px':>9} {'mean px':>8} {'3D mm':>7} {'3D mm al.':>9} {'max °':>6} "
              f"{'seconds':>8} {'px/true':>8} {'mm/true':>8}")
    print(header)
    print("-" * len(header))
    for name, (e, seconds) in rows.items():
        s = scores[name]
        print(f"{name:<30} {s['median_px']:9.4f} {s['mean_px']:8.4f} {s['mm']:7.3f} {s['mm_aligned']:9.3f} "
              f"{angles(e, rig.extrinsics).max():6.2f} {'' if seconds is None else f'{seconds:8.1f}':>8} "
              f"{s['median_px'] / truth['median_px']:8.3f} {s['mm'] / truth['mm']:8.3f}")
    print(f"mck: {info['iterations']} LM iterations, {info['points_used']} points / {info['observations_used']} "
          f"observations used, {info['rejected']} rejected")
    if "aniposelib bundle_adjust_iter" in rows:
        a, m = rows["aniposelib bundle_adjust_iter"], rows["mck refine_extrinsics"]
        print(f"mck vs aniposelib: median px {scores['mck refine_extrinsics']['median_px']:.4f} vs "
              f"{scores['aniposelib bundle_adjust_iter']['median_px']:.4f}, seconds {m[1]:.1f} vs {a[1]:.1f} "
              f"(×{a[1] / m[1]:.1f} faster)")
    within = scores["mck refine_extrinsics"]["median_px"] <= 1.1 * truth["median_px"] and \
        scores["mck refine_extrinsics"]["mm"] <= 1.1 * truth["mm"]
    print(f"mck within 10 % of the true calibration (reprojection and 3D): {'yes' if within else 'NO'}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
