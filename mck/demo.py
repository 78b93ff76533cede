"""``python -m mck demo [root=DIR] [frames=N] [sessions=N] [tiny=true] [OVERRIDES…]``: the whole pipeline on the built-in
synthetic 6-camera project, through the real entry point, as a user would type it — ``synth`` (if the project is not
there yet), then ``python -m mck pipeline experiment=demo`` (``experiment=tiny`` for the tiny project) — then a score
table against the ground truth and the status table. A second run skips everything finished.

The demo holds no configuration: the sizes are the experiments ``conf/experiment/demo.yaml`` and ``tiny.yaml``
(``demo.frames`` / ``demo.tiny`` say what ``synth`` generates). Other ``key=value`` arguments go to ``pipeline`` and
``status`` as they are, e.g. ``hydra/launcher=slurm`` submits the whole demo to SLURM at once."""

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


def _is_tiny(root: Path) -> bool:
    """A project written by ``synth --tiny`` (its manifest's frame size), so a re-run keeps the tiny sizes."""
    try:
        with open(root / "ground_truth" / "manifest.json") as f:
            return tuple(json.load(f)["args"]["size"]) == TINY_SIZE
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """The demo's own options, and the overrides passed on to ``pipeline`` and ``status``."""
    opts = {"root": str(REPO_ROOT / "outputs" / "demo"), "tiny": "false", "frames": "", "sessions": ""}
    overrides = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"mck demo: unknown argument {arg!r} (use root=DIR, tiny=true, frames=N, sessions=N, "
                             "or a config override such as hydra/launcher=slurm)")
        if key in opts:
            opts[key] = value
        else:
            overrides.append(arg)
    return opts, overrides


def main(argv: list[str]) -> int:
    from mck.preparse import compose_root

    opts, overrides = _parse(argv)
    root = Path(opts["root"]).resolve()
    env = {**os.environ, "MCK_DATA_ROOT": str(root)}
    started = time.time()
    tiny = opts["tiny"] == "true" or _is_tiny(root)
    experiment = "tiny" if tiny else "demo"
    synth_settings = compose_root([f"experiment={experiment}"]).demo
    if not (root / "ground_truth").is_dir():
        synth = [sys.executable, "-m", "mck", "synth", str(root)]
        if synth_settings.get("tiny"):
            synth.append("--tiny")
        frames = opts["frames"] or synth_settings.get("frames")
        if frames:
            synth += ["--frames", str(frames)]
        if opts["sessions"]:
            synth += ["--sessions", opts["sessions"]]
        if synth_settings.get("realism"):
            synth += ["--realism", str(synth_settings.get("realism"))]
        _run(synth, env)
    else:
        print(f"mck demo: using the synthetic project in {root}")
    _run([sys.executable, "-m", "mck", "pipeline", f"experiment={experiment}", *overrides], env)
    print(f"\nmck demo: finished in {time.time() - started:.0f} s\n")
    if importlib.util.find_spec("mck.score") is not None:
        from mck.score import main as score_main

        score_main([str(root)])
    print()
    status_overrides = [o for o in overrides if not o.startswith(("hydra/", "hydra.", "+hydra"))]
    _run([sys.executable, "-m", "mck", "status", f"experiment={experiment}", *status_overrides], env, check=False)
    return 0


def _run(cmd: list[str], env: dict[str, str], check: bool = True) -> None:
    shown = " ".join(shlex.quote(c) for c in ["python", *cmd[1:]])
    print(f"\n$ {shown}", flush=True)
    proc = subprocess.run(cmd, env=env)
    if check and proc.returncode != 0:
        raise SystemExit(f"mck demo: stage failed ({proc.returncode}): {shown}")
