"""Batched inference on frame batches (docs/algorithms.md §D.1, §D.2), plus the helpers the video steps share.

The forward pass runs under ``torch.inference_mode``; on CUDA with fp16 autocast and channels_last, on CPU with
all the process's cores (``use_all_cores``). Decoding happens in ``mck.video.iter_frames``' background thread.
"""
from __future__ import annotations

import contextlib
import os

import cv2
import numpy as np
import scipy.ndimage
import torch
from torch import nn

from mck.detection import postprocess, preprocess


def use_all_cores() -> int:
    """Let torch use every core this process may run on; returns the count."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode on ``device``, channels_last (faster convolutions on CUDA and on CPU,
    figures: docs/algorithms.md, Measured figures; same outputs to float round-off)."""
    return model.to(device).eval().to(memory_format=torch.channels_last)


def forward(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W) (already CLAHE'd) → float32 network output as numpy, batched, no grad."""
    device = next(model.parameters()).device
    x = torch.from_numpy(preprocess.to_tensor_input(images)).contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        x = x.to(device, non_blocking=True)
        ctx = torch.autocast("cuda", dtype=torch.float16)
    else:
        ctx = contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        y = model(x)
    return y.float().cpu().numpy()


def predict_centroids(model: nn.Module, frames: np.ndarray, subpixel: bool = False) -> np.ndarray:
    """Full-res grey frames (B, H, W) uint8 → centroids (B, 2) ``[u, v]`` full-res px (int64, or float64 if subpixel).

    Subsample by 2, CLAHE, /255, ConvNet, blur 7×7 σ=2, parse (docs/algorithms.md §D.1). ``subpixel=False``: the lab's parsing
    exactly (reflected blur border); ``subpixel=True`` also blurs with a zero border, so a peak near the edge of the
    map is not pulled onto the edge row (``postprocess.blur_centernet``).
    """
    images = preprocess.clahe(preprocess.subsample(frames))
    maps = forward(model, images)[:, 0]
    border = cv2.BORDER_CONSTANT if subpixel else cv2.BORDER_DEFAULT
    return postprocess.parse_centernet(postprocess.blur_centernet(maps, border), subpixel=subpixel)


def predict_keypoints(model: nn.Module, frames: np.ndarray, centers: np.ndarray, crop_size: int = 512,
                      subpixel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Frames (B, H, W) uint8 and integer crop centres (B, 2) → uv (B, K, 2) full-frame px, conf (B, K).

    Crop ``crop_size`` around each centre (zero padded), CLAHE on it, HRNet, argmax parse (docs/algorithms.md §D.2).
    """
    centers = np.asarray(centers, dtype=np.int64)
    images = preprocess.clahe(preprocess.crop(frames, centers, crop_size))
    heatmaps = forward(model, images)
    uv, conf = postprocess.parse_hrnet(heatmaps, subpixel=subpixel)
    uv = uv + (centers - crop_size // 2)[:, None, :]
    return uv.astype(np.float32), conf.astype(np.float32)


def smooth_centroids(centroids: np.ndarray) -> np.ndarray:
    """docs/algorithms.md §D.2 step 1: temporal median filter (11 frames × 1, reflect borders) per coordinate → int64.

    Non-integer (sub-pixel) centroids are rounded to the nearest pixel before casting.
    """
    c = np.asarray(centroids)
    filtered = scipy.ndimage.median_filter(c, size=(11, 1))
    if np.issubdtype(filtered.dtype, np.floating):
        filtered = np.round(filtered)
    return filtered.astype(np.int64)
