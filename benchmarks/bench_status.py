"""Benchmark: ``python -m mck status`` on 1,000 videos × all steps (target < 2 s).

Builds a project tree of empty marker videos (the inventory never opens them), marker outputs for a realistic
mix of done / failed / pending items, and job records, then times ``mck.status.compute``. The baseline, measured
in the same run, is the naive approach: read every job record and fully validate every output for every
(step, item).

    .venv/bin/python benchmarks/bench_status.py [--videos 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from mck import layout
from mck.compile import project_output_dir
from mck.graph import build_graph
from mck.inventory import Settings, scan
from mck.preparse import project_config
from mck.status import compute, step_names

CAMERAS = ("top", "side1", "side2", "side3", "side4", "bottom")


def build(root: Path, n_videos: int, rng: np.random.Generator) -> None:
    n_sessions = max(1, n_videos // len(CAMERAS))
    (root / "20240101_calibration").mkdir(parents=True)
    for cam in CAMERAS:
        (root / "20240101_calibration" / f"20240101_calibration.{cam}.mp4").write_bytes(b"x")
    (root / "20240101_calibration" / "20240101_calibration.camera_params.h5").write_bytes(b"x")
    for s in range(n_sessions):
        session = f"20240101_S{s:05d}"
        folder = root / session
        folder.mkdir()
        for cam in CAMERAS:
            video = f"{session}.{cam}"
            (folder / f"{video}.mp4").write_bytes(b"x")
            for suffix in ("probe.json", "centroid.npy"):
                (folder / f"{video}.{suffix}").write_bytes(b"x")
            if rng.random() < 0.8:
                (folder / f"{video}.keypoints.h5").write_bytes(b"x")
            elif rng.random() < 0.5:
                rec = layout.record_path(str(root), "hrnet", "keypoints.h5", video)
                rec.parent.mkdir(parents=True, exist_ok=True)
                rec.write_text(json.dumps({"step": "hrnet", "item": video, "state": "failed",
                                           "error": "InputError: truncated video"}))
        if rng.random() < 0.5:
            (folder / f"{session}.robust_triangulation.npy").write_bytes(b"x")


def naive(project, settings: Settings) -> int:
    """Baseline: every (step, item) reads its record and validates its outputs."""
    inv = scan(settings)
    n = 0
    graph = build_graph({"project": project})
    for name in step_names():
        node = graph.node(name)
        level = node.level
        items = {str(project.name): ""} if level == "project" else {k: v.output_dir for k, v in inv.group(level).items()}
        for item, out in items.items():
            out = project_output_dir(node, project) if level == "project" else out
            paths = layout.output_paths(level, item, out, node.outputs[0], node.outputs[1:])
            layout.read_json(layout.record_path(settings.output_root, name, node.output_name, item))
            n += all(layout.output_valid(p) for p in paths)
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_videos = 60 if args.quick else args.videos
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        build(root, n_videos, np.random.default_rng(0))
        project = project_config([f"project.data_root={root}"])
        settings = Settings.from_project(project)
        t0 = time.perf_counter()
        statuses = compute(project)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive(project, settings)
        base = time.perf_counter() - t0
        import os
        import subprocess
        import sys

        env = {**os.environ, "MCK_DATA_ROOT": str(root)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mck", "status"], env=env, check=True, capture_output=True)
        cli = time.perf_counter() - t0
        n_items = sum(sum(s.counts.values()) for s in statuses)
        print(f"status: {n_videos} videos, {len(statuses)} step variants, {n_items} (step, item) cells")
        print(f"  mck status compute: {ours:.3f} s   (target < 2 s)")
        print(f"  python -m mck status (whole command, interpreter start included): {cli:.3f} s")
        print(f"  naive baseline:     {base:.3f} s   ratio baseline/mck = {base / ours:.2f}x")


if __name__ == "__main__":
    main()
