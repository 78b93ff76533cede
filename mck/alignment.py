"""Dropped-frame alignment (docs/algorithms.md §B.2): ``aligned_frame_numbers.csv``: one row per trigger, a column per camera
(plus ``trigger_number``); a camera's cell is empty/NaN where it dropped that trigger. Its detections, in order, go
into the rows where its cell is filled; the other rows are NaN.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from mck.errors import InputError

_EMPTY = ("", "nan", "none", "null")


_FIX = "fix or re-export the file: one row per trigger, per camera its frame number 0, 1, 2, … or empty where it " \
       "dropped the trigger"


def frame_table(path: str | Path, camera_names: Sequence[str]) -> np.ndarray:
    """``(rows, cameras)`` int64: each camera's frame number per trigger row, -1 where it dropped the trigger.

    Validated in full, each problem one InputError naming the file, row and camera: the file is CSV text with a
    column per camera; every filled cell is a whole number ≥ 0; each camera's numbers strictly increase down the
    rows and stay below the number of frames it lists (a camera listing n frames numbers them 0 … n−1);
    ``trigger_number`` (if present) holds whole numbers that strictly increase (one row per trigger)."""
    path = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = list(reader)
    except OSError as exc:
        raise InputError(f"cannot read alignment file ({exc.strerror or exc})", path=path) from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError("alignment file is not CSV text", path=path, fix=_FIX) from exc
    missing = [c for c in camera_names if c not in fields]
    if missing:
        raise InputError(f"alignment file has no column for {', '.join(missing)} (columns: {', '.join(fields)})",
                         path=path, fix="one column per camera name plus trigger_number")
    if not rows:
        raise InputError("alignment file has no rows", path=path, fix=_FIX)
    columns = list(camera_names) + (["trigger_number"] if "trigger_number" in fields else [])
    table = np.full((len(rows), len(columns)), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        for c, name in enumerate(columns):
            cell = (row.get(name) or "").strip()
            if cell.lower() in _EMPTY:
                if name == "trigger_number":
                    raise InputError(f"line {r + 2}: trigger_number is empty", path=path, fix=_FIX)
                continue
            value = _whole_number(cell)
            if value is None or value < 0:
                raise InputError(f"line {r + 2}, column {name}: {cell[:20]!r} is not a frame number",
                                 path=path, fix=_FIX)
            table[r, c] = value
    for c, name in enumerate(columns):
        rows_filled = np.flatnonzero(table[:, c] >= 0)
        values = table[rows_filled, c]
        back = np.flatnonzero(np.diff(values) <= 0)
        if len(back):
            i = back[0]
            raise InputError(f"column {name}: {values[i + 1]} on line {rows_filled[i + 1] + 2} does not "
                             f"follow {values[i]} on line {rows_filled[i] + 2} (numbers must increase)",
                             path=path, fix=_FIX)
        if name != "trigger_number" and len(values) and values[-1] >= len(values):
            raise InputError(f"column {name}: frame {values[-1]} on line {rows_filled[-1] + 2} but "
                             f"the column lists only {len(values)} frames (numbered 0 … {len(values) - 1})",
                             path=path, fix=_FIX)
    return table[:, : len(camera_names)]


def _whole_number(cell: str) -> int | None:
    """``'12'`` or ``'12.0'`` (pandas writes integer columns with gaps as floats) → 12; anything else → None."""
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if np.isfinite(value) and value == int(value) else None


def load_alignment(csv_path: str | Path | None, camera_names: Sequence[str]) -> np.ndarray | None:
    """``(rows, cameras)`` bool: True where the camera has a frame for that trigger; None when no file is given.

    Raises InputError when the file is unreadable, lacks a camera's column or is inconsistent (:func:`frame_table`).
    """
    if not csv_path:
        return None
    return frame_table(str(csv_path), camera_names) >= 0


def apply_alignment(per_camera: Sequence[np.ndarray], alignment: np.ndarray | None,
                    camera_names: Sequence[str] | None = None, fill=np.nan) -> list[np.ndarray]:
    """Spread each camera's per-frame array ``(T_c, ...)`` onto the trigger rows ``(rows, ...)``.

    Without an alignment the arrays must already have equal length (returned unchanged). With one, camera c's
    detections go, in order, into the rows where ``alignment[:, c]`` is True; the count must match (InputError).
    """
    names = list(camera_names) if camera_names is not None else [str(i) for i in range(len(per_camera))]
    if alignment is None:
        lengths = {n: len(a) for n, a in zip(names, per_camera)}
        if len(set(lengths.values())) > 1:
            raise InputError(f"cameras have different frame counts {lengths} and there is no alignment file",
                             fix="provide aligned_frame_numbers.csv for this session")
        return list(per_camera)
    out = []
    for c, (name, arr) in enumerate(zip(names, per_camera)):
        rows = np.flatnonzero(alignment[:, c])
        if len(rows) != len(arr):
            raise InputError(f"camera {name} has {len(arr)} frames but the alignment file lists {len(rows)}",
                             fix="the alignment file must match the videos")
        full = np.full((len(alignment),) + arr.shape[1:], fill, dtype=np.result_type(arr.dtype, np.float64)
                       if np.isnan(fill) else arr.dtype)
        full[rows] = arr
        out.append(full)
    return out


def trigger_rows(csv_path: str | Path, camera_names: Sequence[str]) -> dict[str, dict[int, int]]:
    """Per camera, its video frame number → the trigger row it was recorded at (the cells of
    ``aligned_frame_numbers.csv`` hold each camera's frame number). Raises InputError as :func:`load_alignment`."""
    table = frame_table(csv_path, camera_names)
    return {c: {int(f): r for r, f in enumerate(table[:, i]) if f >= 0} for i, c in enumerate(camera_names)}
