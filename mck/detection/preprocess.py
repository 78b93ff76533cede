"""Batched pre-processing (docs/algorithms.md §D.1, §D.2): subsample, CLAHE (clip 2.0, 32×32 tiles), zero-padded crops.

Frames are grey uint8 arrays ``(B, H, W)`` (channel 0 of the lab's 3-channel monochrome video).
"""
from __future__ import annotations

import cv2
import numpy as np

CLAHE_CLIP = 2.0
CLAHE_TILES = (32, 32)


def subsample(frames: np.ndarray) -> np.ndarray:
    """Every other pixel in both axes, no smoothing: (B, H, W) → (B, ceil(H/2), ceil(W/2))."""
    return np.ascontiguousarray(frames[:, ::2, ::2])


def clahe(frames: np.ndarray, clip: float = CLAHE_CLIP, tiles: tuple[int, int] = CLAHE_TILES) -> np.ndarray:
    """CLAHE on each image of a uint8 batch (B, H, W) → uint8 (B, H, W). OpenCV's API is per image."""
    op = cv2.createCLAHE(clipLimit=clip, tileGridSize=tiles)
    out = np.empty_like(frames)
    for i in range(len(frames)):
        op.apply(frames[i], dst=out[i])
    return out


def crop(frames: np.ndarray, centers: np.ndarray, size: int) -> np.ndarray:
    """Zero-padded ``size × size`` crops centred on integer ``centers`` (B, 2) ``[x, y]``.

    Crop pixel (r, c) ↔ frame pixel (x − size//2 + c, y − size//2 + r); outside the frame → 0. Vectorized gather.
    """
    frames = np.asarray(frames)
    b, h, w = frames.shape[:3]
    centers = np.asarray(centers, dtype=np.int64)
    offs = np.arange(size) - size // 2
    rows = centers[:, 1, None] + offs  # (B, size)
    cols = centers[:, 0, None] + offs
    rvalid, cvalid = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    out = frames[np.arange(b)[:, None, None], np.clip(rows, 0, h - 1)[:, :, None], np.clip(cols, 0, w - 1)[:, None, :]]
    out *= (rvalid[:, :, None] & cvalid[:, None, :]).astype(out.dtype)
    return out


def to_tensor_input(frames: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W) → float32 (B, 1, H, W) in [0, 1]."""
    return (frames.astype(np.float32) / 255.0)[:, None]
