"""Step ``centernet`` (video level): centroid per frame → ``{video}.centroid.npy`` (T, 2) [u, v] px (docs/algorithms.md §D.1).

``subpixel=False`` writes the lab's int64 multiples of 32; ``subpixel=True`` writes float64 refined centroids
(readers cast; the ``hrnet`` step rounds after its median filter).
"""
from __future__ import annotations

import logging

import numpy as np

from mck.detection import infer
from mck.detection.load import default_device, load_centernet
from mck.errors import InputError
from mck.io import save_npy
from mck.steps._detection_loop import remove_checkpoint, run_video
from mck.video import count_frames, video_info


def run(video_path: str, weights_path: str, output_path: str, item: str = "", batch_size: int = 32,
        subpixel: bool = True, save_every: int = 1000, device: str | None = None,
        log: logging.Logger | None = None) -> dict:
    """Centroids for every frame of ``video_path`` with the CenterNet weights at ``weights_path``."""
    info = video_info(video_path)
    total = info.frames if info.frames > 0 else count_frames(video_path)
    if total <= 0:
        raise InputError("video has no frames", item=item, path=video_path)
    dev = default_device() if device is None else __import__("torch").device(device)
    threads = infer.use_all_cores()
    model = infer.prepare(load_centernet(weights_path, device=dev), dev)
    dtype = np.float64 if subpixel else np.int64
    arrays = {"centroid": np.zeros((total, 2), dtype)}
    meta = f"centernet|{weights_path}|{subpixel}|{batch_size}"

    def process(_t: int, frames: np.ndarray) -> dict:
        return {"centroid": infer.predict_centroids(model, frames, subpixel=subpixel)}

    metrics = run_video(video_path, total, arrays, process, output_path=output_path, batch_size=batch_size,
                        save_every=save_every, meta=meta, item=item, log=log)
    save_npy(output_path, arrays["centroid"])
    remove_checkpoint(output_path)
    if log:
        log.info("%s: %d centroids, %.1f frames/s on %s", item, total, metrics["frames_per_s"] or 0, dev)
    return {**metrics, "device": str(dev), "threads": threads, "subpixel": subpixel}
