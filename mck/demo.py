"""``python -m mck demo [root=DIR] [frames=N] [tiny=true]``: the whole pipeline on the built-in synthetic
6-camera project, through the real entry point, as a user would type it; then a score table against the
ground truth and the status table. A second run skips everything finished."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mck.config import REPO_ROOT
from mck.synth import TINY_SIZE

#: (step, sweep, demo-size overrides for the default 640×512 project). Sizes are chosen so the whole demo runs in
#: minutes on 2 CPU cores: CPU-sized networks (HRNet width 4–8 instead of 32), crops that hold the synthetic mouse
#: (all keypoints but the far tail tips), a few hundred optimiser steps, the top and bottom HRNets fine-tuned from
#: the side one. The lab's sizes (conf/step/*.yaml) are for GPUs and real data.
STAGES: list[tuple[str, list[str], list[str]]] = [
    ("probe", ["-m", "video=glob(*)"], []),
    ("calibration", ["-m", "calibration=glob(*)"], []),
    ("train_centernet", [], ["step.func_kwargs.initial_channels=16", "step.func_kwargs.epochs=10",
                             "step.func_kwargs.lr=1e-3"]),
    ("train_hrnet", [], ["step.func_kwargs.width=8", "step.func_kwargs.stem_width=16",
                         "step.func_kwargs.crop_size=192", "step.func_kwargs.epochs=4",
                         "step.func_kwargs.batch_size=4", "step.func_kwargs.lr=1e-3", "step.func_kwargs.transfer=true"]),
    ("centernet", ["-m", "video=glob(*)"], ["step.func_kwargs.batch_size=8"]),   # 8: fastest on CPU (bench_detection)
    ("hrnet", ["-m", "video=glob(*)"], ["step.func_kwargs.crop_size=192", "step.func_kwargs.batch_size=8"]),
    ("triangulation", ["-m", "session=glob(*)"], []),
    ("fit_gimbal", [], []),
    # 3000 iterations (2000 burn-in): with one HMC decision per frame the chain has converged long before; on the
    # demo the score equals the lab's 5000 / 4000 to ±0.05 mm (the config default stays the lab's).
    ("gimbal", ["-m", "session=glob(*)"], ["step.func_kwargs.n_iters=3000", "step.func_kwargs.burn_in=2000"]),
    ("qc", ["-m", "session=glob(*)"], []),
    ("export", ["-m", "session=glob(*)"], []),
    ("compression", ["-m", "video=glob(*)"], []),   # verified copies beside the raw videos, which stay untouched
    ("report", [], []),
]

#: ``tiny=true`` (320×256, 40 frames, 12 labels per video): overrides that replace the ones above, per step.
TINY: dict[str, list[str]] = {
    "train_centernet": ["step.func_kwargs.initial_channels=16", "step.func_kwargs.epochs=30",
                        "step.func_kwargs.lr=1e-3"],
    "train_hrnet": ["step.func_kwargs.width=8", "step.func_kwargs.stem_width=16", "step.func_kwargs.crop_size=160",
                    "step.func_kwargs.epochs=20", "step.func_kwargs.batch_size=4", "step.func_kwargs.lr=1e-3",
                    "step.func_kwargs.transfer=true"],
    "hrnet": ["step.func_kwargs.crop_size=160", "step.func_kwargs.batch_size=8"],
    "fit_gimbal": ["step.func_kwargs.num_states=8"],   # 40 frames: too few complete poses for 50 states
}

#: Frames per session video of the default demo project (synth's own default is 600): HRNet inference on 2 CPU
#: cores is the slow part; ``frames=N`` overrides it.
DEFAULT_FRAMES = 200


def stage_overrides(step: str, tiny: bool) -> list[str]:
    """The demo-size overrides of ``step`` (the tiny ones when ``tiny``)."""
    default = next((o for s, _, o in STAGES if s == step), [])
    return TINY.get(step, default) if tiny else default


def _is_tiny(root: Path) -> bool:
    """A project written by ``synth --tiny`` (its manifest's frame size), so a re-run keeps the tiny sizes."""
    try:
        with open(root / "ground_truth" / "manifest.json") as f:
            return tuple(json.load(f)["args"]["size"]) == TINY_SIZE
    except (OSError, ValueError, KeyError, TypeError):
        return False


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
        if opts["frames"] or opts["tiny"] != "true":
            synth += ["--frames", opts["frames"] or str(DEFAULT_FRAMES)]
        if opts["sessions"]:
            synth += ["--sessions", opts["sessions"]]
        _run(synth, env)
    else:
        print(f"mck demo: using the synthetic project in {root}")
    tiny = opts["tiny"] == "true" or _is_tiny(root)
    timings: list[tuple[str, float]] = []
    for step, sweep, _ in STAGES:
        if not _implemented(step):
            print(f"mck demo: step {step} is not implemented yet — skipped")
            continue
        t0 = time.time()
        _run([sys.executable, "-m", "mck", f"step={step}", *stage_overrides(step, tiny), *sweep], env)
        timings.append((step, time.time() - t0))
    elapsed = time.time() - started
    print(f"\nmck demo: pipeline finished in {elapsed:.0f} s (" + ", ".join(f"{s} {t:.0f} s" for s, t in timings)
          + ")\n")
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
