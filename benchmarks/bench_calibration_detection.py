"""Benchmark: chessboard detection on calibration footage of each realism level, mck against the best plain OpenCV
recipe, both scored against the ground truth in the same run.

Per level (``python -m mck synth --sessions 0 --realism LEVEL``; 640×512 unless ``--size``) and camera:

* **mck**: ``detect_chessboard`` (saddle-cluster regions, saddle-lattice corners, SB on contrast-normalised
  crops, whole-frame SB fallback; verified grid; anchor-dot order);
* **baseline**: ``detect_opencv_sb`` — ``findChessboardCornersSB`` (EXHAUSTIVE | ACCURACY), retried on the 2×
  upscaled frame when it fails — then the §A.2 anchor-dot ordering, so orderings can be compared too.

Columns: frames with the whole board in view; frames found; **wrong grids** (no flip of the detection within 2 px
of the true corners on average — not the board's corners); **wrong orderings** (a flip other than the true one
matches); **outlier** detections (right grid and order, but some corner > 2 px off); mean / 95th-percentile corner
error (px) of the right detections; ms/frame. The totals give the ratio mck / baseline of frames found (the
baseline counted before its anchor step, its most favourable count).

    .venv/bin/python -m benchmarks.bench_calibration_detection [--levels clean realistic hard] [--frames 120]
        [--size 640x512] [--cameras top side1 ...] [--root DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mck.calibration.detect import detect_chessboard, detect_opencv_sb, reorder_chessboard_corners
from mck.video import iter_frames

CALIB = "20240422_calibration"


def baseline(frame: np.ndarray):
    """(corners found by SB before ordering, corners in anchor order or None)."""
    corners = detect_opencv_sb(frame)
    if corners is None:
        return None, None
    ordered, scores = reorder_chessboard_corners(frame, corners, (5, 7))
    return corners, (ordered if scores[0] - scores[1] >= 0.1 else None)


def classify(detection: np.ndarray, truth: np.ndarray) -> tuple[str, np.ndarray]:
    """'ok' | 'outlier' | 'ordering' | 'grid', and the per-corner error (35,) px of the best flip."""
    G = detection.reshape(7, 5, 2)
    flips = [G, G[::-1], G[:, ::-1], G[::-1, ::-1]]
    errors = [np.linalg.norm(f.reshape(-1, 2) - truth, axis=1) for f in flips]
    best = int(np.argmin([e.mean() for e in errors]))
    if errors[best].mean() > 2.0:
        return "grid", errors[best]
    if best != 0:
        return "ordering", errors[best]
    return ("ok" if errors[0].max() <= 2.0 else "outlier"), errors[0]


def score(found: list, uv: np.ndarray, ordered: bool = True) -> dict:
    """Counts and corner errors; ``ordered=False`` (OpenCV's own order): the best flip is the right one."""
    out = {"found": 0, "grid": 0, "ordering": 0, "outlier": 0, "errors": []}
    for k, d in enumerate(found):
        if d is None:
            continue
        out["found"] += 1
        kind, err = classify(d, uv[k])
        if kind == "ordering" and not ordered:
            kind = "ok" if err.max() <= 2.0 else "outlier"
        if kind != "ok":
            out[kind] += 1
        if kind in ("ok", "outlier"):
            out["errors"].append(err)
    return out


def run_level(root: Path, cameras: list[str] | None) -> dict:
    gt = np.load(root / "ground_truth" / f"{CALIB}.board_truth.npz")
    names = [str(n) for n in gt["cameras"]]
    total = {"mck": {"found": 0, "grid": 0, "ordering": 0, "outlier": 0, "errors": [], "s": 0.0},
             "baseline": {"found": 0, "grid": 0, "ordering": 0, "outlier": 0, "errors": [], "s": 0.0,
                          "ordered": 0},
             "frames": 0, "in_view": 0}
    print(f"{'camera':8s}{'in view':>8s}{'sq px p5/p50':>14s} | {'detector':9s}{'found':>6s}{'grid':>5s}{'order':>6s}"
          f"{'outl':>5s}{'err mean':>9s}{'err p95':>8s}{'ms/frame':>9s}")
    for cam in cameras or names:
        c = names.index(cam)
        frames = list(iter_frames(root / CALIB / f"{CALIB}.{cam}.mp4"))
        uv, in_view = gt["uv"][:len(frames), c], gt["in_view"][:len(frames), c]
        sq = gt["square_px"][:len(frames), c][in_view]
        total["frames"] += len(frames)
        total["in_view"] += int(in_view.sum())
        t0 = time.perf_counter()
        ours = [detect_chessboard(f) for f in frames]
        t1 = time.perf_counter()
        base = [baseline(f) for f in frames]
        t2 = time.perf_counter()
        rows = (("mck", score(ours, uv), t1 - t0), ("baseline", score([b[0] for b in base], uv, ordered=False), t2 - t1))
        ordered = score([b[1] for b in base], uv)
        total["baseline"]["ordered"] += ordered["found"]
        total["baseline"]["ordering"] += ordered["ordering"]
        for label, s, dt in rows:
            e = np.concatenate(s["errors"]) if s["errors"] else np.array([np.nan])
            sqs = f"{np.percentile(sq, 5):.1f}/{np.percentile(sq, 50):.1f}" if len(sq) else "-"
            print(f"{cam if label == 'mck' else '':8s}{int(in_view.sum()) if label == 'mck' else '':>8}"
                  f"{sqs if label == 'mck' else '':>14s} | {label:9s}{s['found']:6d}{s['grid']:5d}"
                  f"{s['ordering'] if label == 'mck' else ordered['ordering']:6d}{s['outlier']:5d}"
                  f"{np.nanmean(e):9.3f}{np.nanpercentile(e, 95):8.3f}{dt / len(frames) * 1000:9.1f}", flush=True)
            t = total[label]
            for key in ("found", "grid", "outlier"):
                t[key] += s[key]
            if label == "mck":
                t["ordering"] += s["ordering"]
            t["errors"] += s["errors"]
            t["s"] += dt
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", nargs="+", default=["clean", "realistic", "hard"])
    parser.add_argument("--frames", type=int, default=120, help="calibration frames per video")
    parser.add_argument("--size", default=None, help="WxH (default 640x512)")
    parser.add_argument("--cameras", nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", help="score this synthetic project (one level) instead of writing them")
    args = parser.parse_args()
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in ([None] if args.root else args.levels):
            root = Path(args.root) if args.root else Path(tmp) / level
            if not args.root:
                cmd = [sys.executable, "-m", "mck", "synth", str(root), "--sessions", "0", "--quiet", "--realism",
                       level, "--calibration-frames", str(args.frames), "--seed", str(args.seed)]
                if args.size:
                    cmd += ["--size", args.size]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            print(f"\n== realism {level or args.root} ==")
            total = run_level(root, args.cameras)
            summary.append((level or args.root, total))
    print(f"\n{'level':10s}{'frames':>7s}{'in view':>8s}{'mck':>6s}{'base':>6s}{'base ord':>9s}{'ratio':>7s}"
          f"{'mck grid/ord':>13s}{'base grid/ord':>14s}{'mck err':>8s}{'base err':>9s}{'mck ms':>8s}{'base ms':>8s}")
    for level, t in summary:
        m, b = t["mck"], t["baseline"]
        em = np.concatenate(m["errors"]).mean() if m["errors"] else np.nan
        eb = np.concatenate(b["errors"]).mean() if b["errors"] else np.nan
        print(f"{level:10s}{t['frames']:7d}{t['in_view']:8d}{m['found']:6d}{b['found']:6d}{b['ordered']:9d}"
              f"{m['found'] / max(b['found'], 1):7.2f}{m['grid']:>7d}/{m['ordering']:<5d}{b['grid']:>8d}/"
              f"{b['ordering']:<5d}{em:8.3f}{eb:9.3f}{m['s'] / t['frames'] * 1000:8.1f}"
              f"{b['s'] / t['frames'] * 1000:8.1f}")


if __name__ == "__main__":
    main()
