"""Read the lab's labels (docs/algorithms.md §D.3): Scale-AI JSON result files (lists of tasks) + the labelled JPEGs.

Per task: keypoint names at ``params.geometries.point.objects_to_annotate``, image file name at
``metadata.filename`` (``{session}.{camera}.{frame}.jpg``, stored under ``images/{session}/``), points at
``response.annotations`` = ``[{label, x, y}]`` in full-res px. Missing labels → NaN.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mck.errors import InputError
from mck.skeleton import KEYPOINT_NAMES


@dataclass(frozen=True)
class LabelledImage:
    path: Path          # the JPEG
    camera: str         # second dot-separated token of the file name
    keypoints: np.ndarray  # (K, 2) float64 [u, v] full-res px, NaN where missing


def _find_image(labels_dir: Path, filename: str) -> Path | None:
    session = filename.split(".")[0]
    for candidate in (labels_dir / "images" / session / filename, labels_dir / "images" / filename,
                      labels_dir / filename):
        if candidate.is_file():
            return candidate
    return None


def read_labels(labels_dir: str | Path, names: tuple[str, ...] = tuple(KEYPOINT_NAMES)) -> list[LabelledImage]:
    """All labelled images under ``labels_dir`` (every ``*.json`` file in it), sorted by image path."""
    labels_dir = Path(labels_dir)
    files = sorted(labels_dir.glob("*.json"))
    if not files:
        raise InputError("no label files (*.json) found", path=str(labels_dir),
                         fix="put the Scale-AI result JSON files and the images/ folder in the labels directory")
    index = {n: k for k, n in enumerate(names)}
    out: dict[Path, LabelledImage] = {}
    for file in files:
        try:
            tasks = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read label file ({exc})", path=str(file)) from exc
        if not isinstance(tasks, list):
            raise InputError(f"label file: expected a list of tasks, got {type(tasks).__name__}", path=str(file))
        for n, task in enumerate(tasks):
            try:
                filename = task["metadata"]["filename"]
                task_names = task.get("params", {}).get("geometries", {}).get("point", {}).get(
                    "objects_to_annotate", list(names))
                annotations = (task.get("response") or {}).get("annotations", [])
            except (KeyError, TypeError, AttributeError) as exc:
                raise InputError(f"label file: task {n} lacks {exc}", path=str(file),
                                 fix="expected Scale-AI tasks with metadata.filename and response.annotations") from exc
            unknown = set(task_names) - set(names)
            if unknown:
                raise InputError(f"label file: task {n} annotates unknown keypoints {sorted(unknown)}", path=str(file))
            path = _find_image(labels_dir, filename)
            if path is None:
                raise InputError(f"labelled image {filename} not found", path=str(labels_dir / "images"),
                                 fix="copy the images/{session}/ folders next to the label files")
            kp = np.full((len(names), 2), np.nan)
            for a in annotations:
                if a.get("label") in index:
                    kp[index[a["label"]]] = (float(a["x"]), float(a["y"]))
            parts = filename.split(".")
            out[path] = LabelledImage(path, parts[1] if len(parts) > 2 else "", kp)
    return [out[p] for p in sorted(out)]


def split_train_test(items: list, fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """The lab's split (docs/algorithms.md §D.3): sorted items, numpy seed ``seed``; ``uniform() < fraction`` → test."""
    rng = np.random.RandomState(seed)
    train, test = [], []
    for item in items:
        (test if rng.uniform() < fraction else train).append(item)
    if not train:
        train, test = test, []
    if not test and len(train) > 1:
        test = [train.pop()]
    return train, test
