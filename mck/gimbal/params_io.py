"""The lab's ``gimbal_params.p`` (a joblib-pickled dict, docs/algorithms.md §C.8 item 6), read and written unchanged.

Keys: ``obs_inlier_variance`` (C, K) px², ``indices_egocentric`` [base, tip], ``parents`` (K,), ``radii`` (K,) mm,
``radii_std`` (K,) mm, ``kappas`` (S, K), ``mus`` (S, K, 3), ``pis`` (S,). mck adds ``node_names`` (K,) and
``camera_names`` (C,) when it knows them; readers that do not know those keys ignore them.
"""

from __future__ import annotations

import os

import joblib
import numpy as np

REQUIRED = {"obs_inlier_variance": 2, "parents": 1, "radii": 1, "radii_std": 1, "kappas": 2, "mus": 3, "pis": 1}


def load_params(path: str | os.PathLike) -> dict:
    """Read and check a parameter file; raises ValueError naming the file and the missing/malformed key."""
    try:
        params = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is "not a parameter file"
        raise ValueError(f"{path}: not a GIMBAL parameter file: it does not load with joblib") from exc
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a dict of arrays, found {type(params).__name__}")
    for key, ndim in REQUIRED.items():
        if key not in params:
            raise ValueError(f"{path}: missing key {key!r} (has {sorted(params)})")
        if np.ndim(params[key]) != ndim:
            raise ValueError(f"{path}: {key} should have {ndim} dimensions, has shape {np.shape(params[key])}")
    S, K = np.shape(params["kappas"])
    expected = {"mus": (S, K, 3), "pis": (S,), "parents": (K,), "radii": (K,), "radii_std": (K,)}
    for key, shape in expected.items():
        if np.shape(params[key]) != shape:
            raise ValueError(f"{path}: {key} has shape {np.shape(params[key])}, expected {shape} "
                             f"({S} states × {K} keypoints from kappas)")
    if np.shape(params["obs_inlier_variance"])[1] != K:
        raise ValueError(f"{path}: obs_inlier_variance has shape {np.shape(params['obs_inlier_variance'])}, "
                         f"expected (cameras, {K})")
    params.setdefault("indices_egocentric", [0, 2])
    return params


def save_params(path: str | os.PathLike, params: dict) -> None:
    """Write atomically (temp file + rename) in the lab's joblib format."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        joblib.dump(params, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
