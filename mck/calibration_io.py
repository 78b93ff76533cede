"""``camera_params.h5`` — the lab's "gimbal" calibration format (docs/algorithms.md §A.6), read and written.

Group ``camera_parameters``: ``camera_names`` (C,) UTF-8, ``dist_coefs`` (C, 5), ``intrinsic`` (C, 3, 3),
``rotation`` (C, 3, 3) world→camera, ``translation`` (C, 3) mm. World frame = the root (top) camera.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mck.errors import InputError
from mck.geometry.camera import rodrigues, rotation_to_rvec
from mck.io import save_h5


def save_camera_params(path: str | Path, names: Sequence[str], extrinsics: np.ndarray,
                       intrinsics: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write cameras (extrinsics (C, 6) rvec + t; intrinsics [(K, dist)]) in the docs/algorithms.md §A.6 layout, atomically."""
    extrinsics = np.asarray(extrinsics, dtype=float)
    save_h5(path, {
        "camera_parameters/camera_names": list(names),
        "camera_parameters/dist_coefs": np.stack([np.asarray(d, float).ravel()[:5] for _, d in intrinsics]),
        "camera_parameters/intrinsic": np.stack([np.asarray(K, float) for K, _ in intrinsics]),
        "camera_parameters/rotation": rodrigues(extrinsics[:, :3]),
        "camera_parameters/translation": extrinsics[:, 3:],
    })


def load_camera_params(path: str | Path, camera_names: Sequence[str] | None = None
                       ) -> tuple[list[str], np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Read (names, extrinsics (C, 6), intrinsics [(K, dist)]) in file order or reordered to ``camera_names``.

    Raises InputError naming the file when it is missing, not in the layout, or lacks a requested camera.
    """
    import h5py

    path = str(path)
    try:
        with h5py.File(path, "r") as f:
            group = f["camera_parameters"]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group["camera_names"][()]]
            dist = np.asarray(group["dist_coefs"][()], float)
            K = np.asarray(group["intrinsic"][()], float)
            R = np.asarray(group["rotation"][()], float)
            t = np.asarray(group["translation"][()], float)
    except FileNotFoundError as exc:
        raise InputError("calibration file not found", path=path,
                         fix="run step=calibration for this session's calibration") from exc
    except (OSError, KeyError) as exc:
        raise InputError(f"not a camera_params.h5 file ({exc})", path=path,
                         fix="re-run step=calibration with overwrite=true") from exc
    extrinsics = np.concatenate([rotation_to_rvec(R), t.reshape(-1, 3)], axis=1)
    intrinsics = [(K[i], dist[i]) for i in range(len(names))]
    if camera_names is not None:
        missing = [c for c in camera_names if c not in names]
        if missing:
            raise InputError(f"calibration has cameras {', '.join(names)} but not {', '.join(missing)}", path=path,
                             fix="calibrate with all of the project's cameras or set project.cameras")
        order = [names.index(c) for c in camera_names]
        names = list(camera_names)
        extrinsics = extrinsics[order]
        intrinsics = [intrinsics[i] for i in order]
    return names, extrinsics, intrinsics


CALIBRATION_SOURCES = ("board", "refined")


def choose_calibration(board_path: str, refined_path: str | None, source: str = "board",
                       item: str | None = None) -> tuple[str, str]:
    """The camera file a step reads and which it is: ``source`` ``board`` → the board calibration; ``refined`` →
    the refined one beside it (``refine_calibration``) when it exists, else the board's with a note. Returns
    (path, description) — the description goes into the job record and the report."""
    from mck.errors import ConfigError

    if source not in CALIBRATION_SOURCES:
        raise ConfigError(f"project.calibration_source={source!r} is not one of {', '.join(CALIBRATION_SOURCES)}",
                          item=item, fix="set project.calibration_source=board or refined")
    if source == "refined":
        if refined_path and Path(refined_path).is_file():
            return str(refined_path), "refined"
        return board_path, "board (calibration_source=refined but no refined file yet: run step=refine_calibration)"
    return board_path, "board"


def calibration_qc_path(path: str | Path) -> Path:
    """``{calibration}.calibration_qc.json`` beside ``{calibration}.camera_params.h5`` (the calibration step's QC)."""
    path = Path(path)
    stem = path.name[:-len(".camera_params.h5")] if path.name.endswith(".camera_params.h5") else path.stem
    return path.with_name(f"{stem}.calibration_qc.json")


def calibration_warnings(path: str | Path) -> list[str]:
    """The failed QC checks of the calibration file ``path`` (``message (fix)`` lines; empty when its QC passed or
    was never written)."""
    import json

    try:
        with open(calibration_qc_path(path)) as f:
            qc = json.load(f)
    except (OSError, ValueError):
        return []
    return [f"{w['message']} ({w['fix']})" for w in qc.get("warnings", [])]


def warn_if_failed_qc(path: str | Path, log, item: str = "") -> list[str]:
    """Log each failed QC check of the calibration ``path`` as a warning (downstream steps call this when they read
    a calibration); returns them."""
    lines = calibration_warnings(path)
    for line in lines:
        log.warning("%s: the calibration %s failed a QC check: %s", item, Path(path).name, line)
    return lines
