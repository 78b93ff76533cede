"""``python -m mck demo [root=DIR] [frames=N] [tiny=true]``: the whole pipeline on the built-in synthetic
6-camera project, through the real entry point, as a user would type it; then a score table against the
ground truth and the status table. A second run skips everything finished."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mck.config import REPO_ROOT

#: (step, sweep, demo-size overrides). Sizes are chosen so the whole demo runs in minutes on 2 CPU cores.
STAGES: list[tuple[str, list[str], list[str]]] = [
    ("probe", ["-m", "video=glob(*)"], []),
    ("calibration", ["-m", "calibration=glob(*)"], []),
    ("train_centernet", [], []),
    ("train_hrnet", [], []),
    ("centernet", ["-m", "video=glob(*)"], []),
    ("hrnet", ["-m", "video=glob(*)"], []),
    ("triangulation", ["-m", "session=glob(*)"], []),
    ("fit_gimbal", [], []),
    ("gimbal", ["-m", "session=glob(*)"], []),
    ("qc", ["-m", "session=glob(*)"], []),
    ("report", [], []),
]


def _implemented(step: str) -> bool:
    return importlib.util.find_spec(f"mck.steps.{step}") is not None


def _parse(argv: list[str]) -> dict[str, str]:
    opts = {"root": str(REPO_ROOT / "outputs" / "demo"), "tiny": "false", "frames": "", "sessions": ""}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in opts:
            raise SystemExit(f"mck demo: unknown argument {arg!r} (use root=DIR, tiny=true, frames=N, sessions=N)")
        opts[key] = value
    return opts


def main(argv: list[str]) -> int:
    opts = _parse(argv)
    root = Path(opts["root"]).resolve()
    env = {**os.environ, "MCK_DATA_ROOT": str(root)}
    started = time.time()
    if not (root / "ground_truth").is_dir():
        synth = [sys.executable, "-m", "mck", "synth", str(root)]
        if opts["tiny"] == "true":
            synth.append("--tiny")
        if opts["frames"]:
            synth += ["--frames", opts["frames"]]
        if opts["sessions"]:
            synth += ["--sessions", opts["sessions"]]
        _run(synth, env)
    else:
        print(f"mck demo: using the synthetic project in {root}")
    for step, sweep, overrides in STAGES:
        if not _implemented(step):
            print(f"mck demo: step {step} is not implemented yet — skipped")
            continue
        _run([sys.executable, "-m", "mck", f"step={step}", *overrides, *sweep], env)
    elapsed = time.time() - started
    print(f"\nmck demo: pipeline finished in {elapsed:.0f} s\n")
    if importlib.util.find_spec("mck.score") is not None:
        from mck.score import main as score_main

        score_main([str(root)])
    print()
    _run([sys.executable, "-m", "mck", "status"], env, check=False)
    return 0


def _run(cmd: list[str], env: dict[str, str], check: bool = True) -> None:
    shown = " ".join(shlex.quote(c) for c in ["python", *cmd[1:]])
    print(f"\n$ {shown}", flush=True)
    proc = subprocess.run(cmd, env=env)
    if check and proc.returncode != 0:
        raise SystemExit(f"mck demo: stage failed ({proc.returncode}): {shown}")
