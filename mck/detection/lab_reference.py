"""The lab's per-frame inference (docs/algorithms.md §D.1, §D.2), one frame at a time (batch size 1), the reference that mck's
batched inference is tested and benchmarked against (``subpixel=False`` must reproduce it).

Grey frames are uint8 (H, W) full-resolution; outputs are in full-frame px.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch


@functools.cache
def _clahe_filter() -> cv2.CLAHE:
    """One CLAHE object, created once as the lab's loop does (its cost stays out of the per-frame baseline)."""
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(32, 32))


def _clahe(img: np.ndarray) -> np.ndarray:
    return _clahe_filter().apply(np.ascontiguousarray(img))


def lab_centroid(model: torch.nn.Module, frame: np.ndarray) -> np.ndarray:
    """docs/algorithms.md §D.1: subsample by 2, CLAHE, /255, forward, blur 7×7 σ=2, argmax of row and column maxima → (2,) int64
    ``[u, v]`` (32 px cells)."""
    x = torch.from_numpy(_clahe(frame[::2, ::2]).astype(np.float32) / 255.0)[None, None]
    with torch.no_grad():
        out = model(x)[0, 0].numpy()
    out = cv2.GaussianBlur(out, (7, 7), 2)
    return np.array([np.argmax(out.max(axis=0)), np.argmax(out.max(axis=1))], dtype=np.int64) * 32


def lab_keypoints(model: torch.nn.Module, frame: np.ndarray, center, size: int) -> tuple[np.ndarray, np.ndarray]:
    """docs/algorithms.md §D.2 steps 2–6: paste the ``size`` window around ``center`` (int) on a zero canvas, CLAHE,
    forward, argmax per heatmap → ``uv`` (K, 2) float32 full-frame px (2 px cells), ``conf`` (K,) in [0, 1]."""
    x, y = int(center[0]), int(center[1])
    half = size // 2
    h, w = frame.shape
    canvas = np.zeros((size, size), np.uint8)
    y0, y1, x0, x1 = max(y - half, 0), min(y + half, h), max(x - half, 0), min(x + half, w)
    if y1 > y0 and x1 > x0:
        canvas[y0 - (y - half):y1 - (y - half), x0 - (x - half):x1 - (x - half)] = frame[y0:y1, x0:x1]
    inp = torch.from_numpy(_clahe(canvas).astype(np.float32) / 255.0)[None, None]
    with torch.no_grad():
        heat = model(inp)[0].numpy()
    k, _, hw = heat.shape
    idx = heat.reshape(k, -1).argmax(1)
    uv = np.stack([2 * (idx % hw), 2 * (idx // hw)], 1) + np.array([x - half, y - half])
    conf = np.clip(heat.reshape(k, -1)[np.arange(k), idx], 0, 1)
    return uv.astype(np.float32), conf.astype(np.float32)
