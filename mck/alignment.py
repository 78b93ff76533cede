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


def _cells(path: str, camera_names: Sequence[str]) -> list[list[str]]:
    """Per trigger row, each camera's cell stripped ('' where it dropped the trigger). Raises InputError when the
    file is unreadable or lacks a camera's column."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = list(reader)
    except OSError as exc:
        raise InputError(f"cannot read alignment file ({exc})", path=path) from exc
    missing = [c for c in camera_names if c not in fields]
    if missing:
        raise InputError(f"alignment file has no column for {', '.join(missing)} (columns: {', '.join(fields)})",
                         path=path, fix="one column per camera name plus trigger_number")
    cells = [[(r.get(c) or "").strip() for c in camera_names] for r in rows]
    return [["" if v.lower() in _EMPTY else v for v in row] for row in cells]


def load_alignment(csv_path: str | Path | None, camera_names: Sequence[str]) -> np.ndarray | None:
    """``(rows, cameras)`` bool: True where the camera has a frame for that trigger; None when no file is given.

    Raises InputError when the file is unreadable or lacks a camera's column.
    """
    if not csv_path:
        return None
    cells = _cells(str(csv_path), camera_names)
    return np.array([[v != "" for v in row] for row in cells], dtype=bool).reshape(len(cells), len(camera_names))


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
    path = str(csv_path)
    out: dict[str, dict[int, int]] = {c: {} for c in camera_names}
    for r, row in enumerate(_cells(path, camera_names)):
        for c, cell in zip(camera_names, row):
            if cell:
                try:
                    out[c][int(float(cell))] = r
                except ValueError as exc:
                    raise InputError(f"alignment file: row {r + 1}, camera {c}: {cell!r} is not a frame number",
                                     path=path) from exc
    return out
