"""``{video}.keypoints.h5`` — per-video 2D keypoints (docs/algorithms.md §D.6), read and written in one place.

Layout: ``uv`` (T, 15, 2) float32 distorted pixels (x right, y down), ``conf`` (T, 15) float32 in [0, 1].
The detection step writes it with ``save_keypoints``; triangulation and QC read it with ``load_keypoints``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mck.errors import InputError
from mck.io import save_h5

N_KEYPOINTS = 15


def save_keypoints(path: str | Path, uv: np.ndarray, conf: np.ndarray, attrs: dict | None = None) -> None:
    """Write ``uv`` (T, 15, 2) px and ``conf`` (T, 15) as float32, atomically."""
    uv = np.asarray(uv, dtype=np.float32)
    conf = np.asarray(conf, dtype=np.float32)
    _check(uv, conf, str(path))
    save_h5(path, {"uv": uv, "conf": conf}, attrs)


def load_keypoints(path: str | Path, item: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(uv (T, 15, 2) float64 px, conf (T, 15) float64)``; InputError naming the file when it is missing,
    not in the layout, or has inconsistent shapes."""
    import h5py

    path = str(path)
    try:
        with h5py.File(path, "r") as f:
            uv = np.asarray(f["uv"][()], dtype=float)
            conf = np.asarray(f["conf"][()], dtype=float)
    except FileNotFoundError as exc:
        raise InputError("keypoints file not found", item=item, path=path,
                         fix="run step=hrnet for this video first") from exc
    except (OSError, KeyError) as exc:
        raise InputError(f"not a keypoints.h5 file (expected datasets uv, conf; {exc})", item=item, path=path,
                         fix="re-run step=hrnet with overwrite=true") from exc
    _check(uv, conf, path, item)
    return uv, conf


def _check(uv: np.ndarray, conf: np.ndarray, path: str, item: str | None = None) -> None:
    if uv.ndim != 3 or uv.shape[1:] != (N_KEYPOINTS, 2):
        raise InputError(f"uv has shape {uv.shape}, expected (frames, {N_KEYPOINTS}, 2)", item=item, path=path)
    if conf.shape != uv.shape[:2]:
        raise InputError(f"conf has shape {conf.shape}, expected {uv.shape[:2]} to match uv", item=item, path=path)
