"""Benchmark: chessboard detection and calibration on a synthetic calibration session, scored against its ground
truth.

Writes the calibration videos of the default preset (``python -m mck synth --sessions 0``, 640×512, 360 frames;
``--tiny``: 320×256, 120 frames) to a temporary folder, then

* **detection**, per camera: frames with a detection / frames where the whole board is in view at an incidence
  below 60° (and below 70°), wrongly ordered or wrong detections (any corner > 2 px from the truth), corner error
  (mean, 95th percentile) and ms per frame — for ``detect_chessboard`` and, as the baseline, the lab's detector
  (``detect_plain``: ``findChessboardCorners`` + ``cornerSubPix`` + anchor, docs/algorithms.md §A.2) on every ``--lab-step``-th
  of the same frames (it is much slower; figures: docs/algorithms.md, Measured figures);
* **calibration**: ``calibrate`` (intrinsics, PnP, chained extrinsics) and ``bundle_adjust`` on the detections,
  timed; per camera the centre error (mm, in the world = top camera frame of the file, and after the best rigid
  alignment), focal error (%), principal point error (px), reprojection RMS (px).

    .venv/bin/python benchmarks/bench_calibration.py [--tiny] [--seed 0] [--step 1] [--lab-step 6]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mck.calibration import bundle_adjust, calibrate
from mck.calibration.detect import detect_chessboard_scored, detect_plain
from mck.calibration_io import load_camera_params
from mck.geometry import project, rodrigues
from mck.synth.board import object_points
from mck.video import iter_frames

CALIB = "20240422_calibration"


def centres(extrinsics: np.ndarray) -> np.ndarray:
    R = rodrigues(extrinsics[:, :3])
    return -np.einsum("cji,cj->ci", R, extrinsics[:, 3:])


def rigid_align(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A moved by the best rotation + translation onto B (Kabsch)."""
    ca, cb = A.mean(0), B.mean(0)
    U, _, Vt = np.linalg.svd((B - cb).T @ (A - ca))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    return (A - ca) @ R.T + cb


def truth(root: Path):
    names, ext, intr = load_camera_params(root / "ground_truth" / "camera_params.h5")
    poses = np.load(root / "ground_truth" / f"{CALIB}.board_poses.npz")
    R = rodrigues(poses["rvecs"])
    world = np.einsum("fij,nj->fni", R, object_points()) + poses["tvecs"][:, None]
    uv = project(world, ext, intr)                                        # (F, C, 35, 2)
    sight = centres(ext)[None] - world.mean(1)[:, None]                   # (F, C, 3)
    incidence = np.degrees(np.arccos(np.abs(np.sum(sight * R[:, None, :, 2], -1)) /
                                     np.linalg.norm(sight, axis=-1)))
    return names, ext, intr, uv, incidence


def detect_all(root: Path, names, uv, incidence, step: int, lab_step: int):
    corners = np.full((len(names), uv.shape[0], 35, 2), np.nan)
    sizes = []
    print(f"{'camera':8s}{'detector':10s}{'found':>7s}{'inc<60°':>9s}{'inc<70°':>9s}{'wrong':>7s}"
          f"{'err mean':>10s}{'err p95':>9s}{'ms/frame':>10s}")
    total = {"ours": [0.0, 0], "lab": [0.0, 0]}
    for c, cam in enumerate(names):
        all_frames = list(iter_frames(root / CALIB / f"{CALIB}.{cam}.mp4"))
        height, width = all_frames[0].shape
        sizes.append((width, height))
        for label, detector, every in (
                ("ours", lambda f: (r[0] if (r := detect_chessboard_scored(f)) else None), step),
                ("lab", detect_plain, step * lab_step)):
            frames = all_frames[::every]
            index = np.arange(0, uv.shape[0], every)[:len(frames)]
            in_view = ((uv[index, c, :, 0] > 0) & (uv[index, c, :, 0] < width) & (uv[index, c, :, 1] > 0)
                       & (uv[index, c, :, 1] < height)).all(-1)
            t0 = time.perf_counter()
            found = [detector(f) for f in frames]
            dt = time.perf_counter() - t0
            total[label][0] += dt
            total[label][1] += len(frames)
            ok = np.array([d is not None for d in found])
            errors, wrong = [], 0
            for k, d in enumerate(found):
                if d is None:
                    continue
                e = np.linalg.norm(d - uv[index[k], c], axis=1)
                if e.max() > 2.0:
                    wrong += 1
                else:
                    errors.append(e)
                    if label == "ours":
                        corners[c, index[k]] = d
            err = np.concatenate(errors) if errors else np.array([np.nan])
            mean, p95 = (np.mean(err), np.percentile(err, 95)) if errors else (np.nan, np.nan)
            inc = incidence[index, c]
            good60, good70 = in_view & (inc < 60), in_view & (inc < 70)
            print(f"{cam:8s}{label:10s}{ok.sum():7d}{f'{(ok & good60).sum()}/{good60.sum()}':>9s}"
                  f"{f'{(ok & good70).sum()}/{good70.sum()}':>9s}{wrong:7d}{mean:10.3f}"
                  f"{p95:9.3f}{dt / len(frames) * 1000:10.1f}")
    (t_ours, n_ours), (t_lab, n_lab) = total["ours"], total["lab"]
    print(f"detection: ours {t_ours:.1f} s over {n_ours} frames ({t_ours / n_ours * 1000:.1f} ms/frame); "
          f"lab's {t_lab:.1f} s over {n_lab} frames ({t_lab / n_lab * 1000:.1f} ms/frame)")
    return corners, sizes


def calibrate_and_score(corners, sizes, names, ext, intr) -> None:
    obj = object_points()
    t0 = time.perf_counter()
    e0, i0, poses, _ = calibrate(corners, obj, sizes, names=names)
    t1 = time.perf_counter()
    result = bundle_adjust(corners, e0, i0, obj, poses)
    t2 = time.perf_counter()
    est, gt = centres(result.extrinsics), centres(ext)
    raw = np.linalg.norm(est - gt, axis=1)
    aligned = np.linalg.norm(rigid_align(est, gt) - gt, axis=1)
    init = np.linalg.norm(centres(e0) - gt, axis=1)
    print(f"\ninitial calibration {t1 - t0:.2f} s; bundle adjustment {t2 - t1:.2f} s ({result.iterations} "
          f"iterations, {len(result.frames)} frames, {int(result.views.sum())} views, "
          f"{int(result.rejected.sum())} rejected; {result.message})")
    print(f"{'camera':8s}{'centre mm':>11s}{'aligned mm':>12s}{'initial mm':>12s}{'focal %':>9s}"
          f"{'pp px':>8s}{'RMS px':>8s}")
    for c, cam in enumerate(names):
        K, K0 = result.intrinsics[c][0], intr[c][0]
        pp = np.hypot(K[0, 2] - K0[0, 2], K[1, 2] - K0[1, 2])
        print(f"{cam:8s}{raw[c]:11.3f}{aligned[c]:12.3f}{init[c]:12.2f}{(K[0, 0] / K0[0, 0] - 1) * 100:+9.3f}"
              f"{pp:8.2f}{result.rms_px[c]:8.3f}")
    print(f"max centre error {raw.max():.3f} mm (target < 1 mm on the default preset)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=1, help="detect every STEP-th frame")
    parser.add_argument("--lab-step", type=int, default=6, help="the lab's detector on every N-th of those")
    parser.add_argument("--root", help="use this synthetic project instead of writing one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp) / "data"
        if not args.root:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mck", "synth", str(root), "--sessions", "0", "--quiet",
                            "--seed", str(args.seed)] + (["--tiny"] if args.tiny else []), check=True,
                           stdout=subprocess.DEVNULL)
            print(f"synthetic calibration session written in {time.perf_counter() - t0:.1f} s")
        names, ext, intr, uv, incidence = truth(root)
        corners, sizes = detect_all(root, names, uv, incidence, args.step, args.lab_step)
        calibrate_and_score(corners, sizes, names, ext, intr)


if __name__ == "__main__":
    main()
