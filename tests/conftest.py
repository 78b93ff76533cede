"""Shared fixtures: tiny projects on disk and a way to run ``python -m mck`` for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ("top", "side1", "side2", "side3", "side4", "bottom")


def write_tiny_video(path: Path, frames: int, size=(48, 64), value0: int = 0) -> None:
    from mck.video import write_video

    h, w = size
    write_video(path, [np.full((h, w), (value0 + 7 * i) % 255, np.uint8) for i in range(frames)], fps=30)


def make_project(root: Path, sessions=("20240422_J04301", "20240422_J04302"), frames: int = 12,
                 calibration: str | None = "20240422_calibration") -> Path:
    """Sessions × 6 cameras of tiny grey videos, plus a calibration session, under ``root``."""
    for session in list(sessions) + ([calibration] if calibration else []):
        (root / session).mkdir(parents=True, exist_ok=True)
        for i, cam in enumerate(CAMERAS):
            write_tiny_video(root / session / f"{session}.{cam}.mp4", frames, value0=10 * i)
    return root


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "data")


def run_mck(args: list[str], data_root: Path | None, cwd: Path, check: bool | None = None,
            timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m mck ARGS`` in ``cwd`` (so Hydra's outputs/ land there) on the project at ``data_root``."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MCK_ITEMS_URL", None)
    if data_root is not None:
        full_env["MCK_DATA_ROOT"] = str(data_root)
    proc = subprocess.run([sys.executable, "-m", "mck", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mck {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def status_json(data_root: Path, cwd: Path, *extra: str) -> dict:
    proc = run_mck(["status", "--json", *extra], data_root, cwd, check=True)
    return {(s["step"], s["variant"]): s for s in json.loads(proc.stdout)}


def slurm_up() -> bool:
    """A SLURM controller answers and has a usable node (the local cluster of ../shared/slurm)."""
    import shutil

    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    unusable = ("down", "drain", "fail", "unknown", "not_responding", "future", "inval")
    states = [s.strip().lower().rstrip("*~#!%$@^-") for s in proc.stdout.split()]
    return proc.returncode == 0 and any(s and not s.startswith(unusable) for s in states)   # idle, mix, completing…
