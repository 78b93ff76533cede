"""Where things live: output paths per step and item, job records, locks. One place for the naming rules.

Outputs (lab-compatible): ``OUTPUT_ROOT/SESSION/{item}.{output_name}`` for video, session and calibration items
(e.g. ``20240422_J04301.top.keypoints.h5``); project-level steps write ``output_info.output_dir/{output_name}``
(default ``OUTPUT_ROOT/{output_name}``). Job state lives under ``OUTPUT_ROOT/.mck/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np


def output_paths(level: str, item: str, output_dir: str, output_name: str, also: Iterable[str] = ()) -> list[str]:
    """Absolute paths of a step's outputs for one item; the first is the primary output."""
    names = [output_name, *also]
    if level == "project":
        return [os.path.join(output_dir, n) for n in names]
    return [os.path.join(output_dir, f"{item}.{n}") for n in names]


def unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot be an item or output file name (a path separator, ``..``, a leading dot, a control
    character), or None when it is a plain file name."""
    name = str(name)
    if not name or name in (".", ".."):
        return "it is empty or '.' or '..'"
    if "/" in name or "\\" in name or os.sep in name:
        return "it contains a path separator"
    if ".." in name.split("."):
        return "it contains '..'"
    if name.startswith("."):
        return "it starts with '.'"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains a control character"
    return None


def unsafe_output_name(name: str) -> str | None:
    """Why ``name`` cannot be a step's output name, or None. Unlike item names, an output may sit in a sub-folder
    of its item's folder (``report/index.html``): every part must be a plain file name, never absolute or ``..``."""
    name = str(name)
    if name.startswith(("/", "\\")) or os.path.isabs(name):
        return "it is an absolute path"
    for part in name.replace("\\", "/").split("/"):
        why = unsafe_name(part)
        if why:
            return why
    return None


def variant_key(output_name: str) -> str:
    """A directory-safe name for a step variant (its primary output name)."""
    return output_name.replace(os.sep, "__")


def state_dir(output_root: str) -> Path:
    return Path(output_root) / ".mck"


def record_path(output_root: str, step: str, output_name: str, item: str) -> Path:
    return state_dir(output_root) / "records" / step / variant_key(output_name) / f"{item}.json"


def lock_path(output_root: str, step: str, output_name: str, item: str) -> Path:
    return state_dir(output_root) / "locks" / step / variant_key(output_name) / f"{item}.lock"


def probe_path(output_dir: str, video: str) -> str:
    return os.path.join(output_dir, f"{video}.probe.json")


def output_exists(path: str) -> bool:
    """Cheap check (status): a non-empty file or a non-empty directory."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if os.path.isdir(path):
        return any(True for _ in os.scandir(path))
    return st.st_size > 0


def output_valid(path: str) -> bool:
    """Stronger check (before skipping work): the file opens in its format."""
    if not output_exists(path):
        return False
    try:
        if path.endswith(".npy"):
            np.load(path, mmap_mode="r")
        elif path.endswith(".json"):
            with open(path) as f:
                json.load(f)
        elif path.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(path, "r"):
                pass
    except Exception:
        return False
    return True


def read_json(path: str | os.PathLike) -> Any | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
