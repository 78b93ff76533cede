"""The synthetic 6-camera world: rig, calibration board, animal, renderer and project writer (``python -m mck
synth``). Everything the demo and the tests run on, with ground truth to score every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Frame size (W, H) of ``python -m mck synth --tiny`` projects.
TINY_SIZE = (320, 256)


def load_ground_truth(root: str | Path, session: str) -> dict[str, np.ndarray]:
    """Ground truth of one session: ``keypoints3d`` (T, 15, 3) mm, ``uv`` (T, 6, 15, 2) distorted px, ``visible``
    (T, 6, 15), ``centroid`` (T, 6, 2), ``frames`` (T, 6) video frame of each trigger (−1 dropped), ``cameras``."""
    gt = Path(root) / "ground_truth"
    out = {"keypoints3d": np.load(gt / f"{session}.keypoints3d.npy")}
    with np.load(gt / f"{session}.keypoints2d.npz") as z:
        out.update({k: z[k] for k in z.files})
    return out
