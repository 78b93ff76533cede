"""Benchmark: ``step=report`` on 100 sessions of synthetic outputs (target < 60 s).

One real ``qc`` run on a synthetic session (lab-format keypoints, triangulation, gimbal, calibration) gives a
``qc.json`` and its six PNGs; they are hard-linked into every session of a 100-session project (marker videos, as
in bench_status), with finished job records for the timing table. Then the report is built twice: images linked
(what "auto" does beyond 20 sessions) and every image embedded as base64 (one self-contained file).

    .venv/bin/python benchmarks/bench_report.py [--sessions 100] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.qc.helpers (synthetic lab-format files)

from mck import layout
from mck.preparse import project_config

CAMERAS = ("top", "side1", "side2", "side3", "side4", "bottom")
CAL = "20240101_calibration"


def build(root: Path, n_sessions: int, work: Path) -> None:
    from mck.steps import qc
    from tests.qc.helpers import session_outputs

    src = work / "src"
    o = session_outputs(src, "20240101_S00000", frames=60)
    qc.run("20240101_S00000", {}, o["keypoints"], o["calibration"], str(src / "20240101_S00000.qc.json"),
           triangulation_path=str(src / "20240101_S00000.robust_triangulation.npy"),
           gimbal_path=str(src / "20240101_S00000.gimbal.npy"), make_overlay=False, progress=False)
    (root / CAL).mkdir(parents=True)
    for cam in CAMERAS:
        (root / CAL / f"{CAL}.{cam}.mp4").write_bytes(b"x")
    shutil.copy(o["calibration"], root / CAL / f"{CAL}.camera_params.h5")
    template = json.loads((src / "20240101_S00000.qc.json").read_text())
    for s in range(n_sessions):
        session = f"20240101_S{s:05d}"
        folder = root / session
        (folder / f"{session}.qc").mkdir(parents=True)
        for cam in CAMERAS:
            (folder / f"{session}.{cam}.mp4").write_bytes(b"x")
            rec = layout.record_path(str(root), "hrnet", "keypoints.h5", f"{session}.{cam}")
            rec.parent.mkdir(parents=True, exist_ok=True)
            rec.write_text(json.dumps({"state": "done", "elapsed_s": 30.0 + s % 7, "nframes": 360}))
        for png in (src / "20240101_S00000.qc").glob("*.png"):
            os.link(png, folder / f"{session}.qc" / png.name)
        page = dict(template, session=session)
        page["plots"] = {k: dict(v, png=f"{session}.qc/{k}.png") for k, v in template["plots"].items()}
        (folder / f"{session}.qc.json").write_text(json.dumps(page))
        (folder / f"{session}.robust_triangulation.npy").write_bytes(b"x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 10 if args.quick else args.sessions
    from mck.steps import report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        t0 = time.perf_counter()
        build(root, n, Path(tmp))
        setup = time.perf_counter() - t0
        project = project_config([f"project.data_root={root}"])
        out = root / "report" / "index.html"
        results = {}
        for embed in (False, True):
            t0 = time.perf_counter()
            m = report.run(str(root), project, str(out), embed_images=embed)
            results[embed] = (time.perf_counter() - t0, m["bytes"])
        print(f"report: {n} sessions with QC ({n * 6} plots), synthetic outputs built in {setup:.1f} s")
        print(f"  images linked:   {results[False][0]:.2f} s, {results[False][1] / 1e6:.2f} MB   (target < 60 s)")
        print(f"  images embedded: {results[True][0]:.2f} s, {results[True][1] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
