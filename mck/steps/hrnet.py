"""Step ``hrnet`` (video level): 15 keypoints per frame → ``{video}.keypoints.h5`` (docs/algorithms.md §D.2, §D.6).

``uv`` (T, 15, 2) float32 full-frame distorted px, ``conf`` (T, 15) float32 in [0, 1]. Crops of ``crop_size``
around the 11-frame median-filtered centroid; the view's weights are chosen by the config.
"""
from __future__ import annotations

import logging

import numpy as np

from mck.detection import infer
from mck.detection.load import default_device, load_hrnet
from mck.errors import InputError
from mck.io import save_h5
from mck.steps._detection_loop import remove_checkpoint, run_video
from mck.video import video_info


def run(video_path: str, centroid_path: str, weights_path: str, output_path: str, item: str = "",
        batch_size: int = 32, crop_size: int = 512, subpixel: bool = True, save_every: int = 1000,
        device: str | None = None, log: logging.Logger | None = None) -> dict:
    """Keypoints for every frame of ``video_path`` (as many frames as ``centroid_path`` has rows)."""
    if crop_size <= 0 or crop_size % 32:
        raise InputError(f"crop_size must be a positive multiple of 32, got {crop_size}", item=item,
                         fix="set step.hrnet.func_kwargs.crop_size (512 for the lab's 1280×1024 weights)")
    try:
        centroids = np.load(centroid_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read centroids ({exc})", item=item, path=centroid_path,
                         fix="re-run the centernet step for this video") from exc
    if centroids.ndim != 2 or centroids.shape[1] != 2 or len(centroids) == 0:
        raise InputError(f"centroid file: expected shape (frames, 2), got {centroids.shape}", item=item,
                         path=centroid_path, fix="re-run the centernet step for this video")
    total = len(centroids)
    info = video_info(video_path)
    if 0 < info.frames < total:
        raise InputError(f"video is shorter than its centroid file: header says {info.frames} frames, centroids "
                         f"have {total}", item=item, path=video_path,
                         fix="the centroid file is from another video or the video was truncated; re-run centernet")
    centers = infer.smooth_centroids(centroids)
    dev = default_device() if device is None else __import__("torch").device(device)
    threads = infer.use_all_cores()
    model = infer.prepare(load_hrnet(weights_path, device=dev), dev)
    joints = model.nof_joints
    arrays = {"uv": np.zeros((total, joints, 2), np.float32), "conf": np.zeros((total, joints), np.float32)}
    meta = f"hrnet|{weights_path}|{crop_size}|{subpixel}|{batch_size}"

    def process(t: int, frames: np.ndarray) -> dict:
        uv, conf = infer.predict_keypoints(model, frames, centers[t:t + len(frames)], crop_size, subpixel)
        return {"uv": uv, "conf": conf}

    metrics = run_video(video_path, total, arrays, process, output_path=output_path, batch_size=batch_size,
                        save_every=save_every, meta=meta, item=item, log=log)
    save_h5(output_path, arrays, attrs={"crop_size": crop_size, "subpixel": subpixel})
    remove_checkpoint(output_path)
    if log:
        log.info("%s: %d frames, %.1f frames/s on %s", item, total, metrics["frames_per_s"] or 0, dev)
    return {**metrics, "device": str(dev), "threads": threads, "subpixel": subpixel, "crop_size": crop_size,
            "median_conf": float(np.median(arrays["conf"]))}
