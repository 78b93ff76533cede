"""Heatmap parsing (docs/algorithms.md §D.1, §D.2).

``subpixel=False`` reproduces the lab's argmax parsing exactly (integer coordinates, first maximum wins);
``subpixel=True`` refines the argmax by a per-axis quadratic fit through the peak and its two neighbours
(offset clipped to ±0.5 cell), removing the 2 px / 32 px quantisation (docs/algorithms.md §E QUIRK 12).
"""
from __future__ import annotations

import cv2
import numpy as np

CENTERNET_STRIDE = 32  # full-res px per output cell (subsample 2 × network stride 16)
HRNET_STRIDE = 2       # crop px per heatmap cell


def blur_centernet(maps: np.ndarray, border: int = cv2.BORDER_DEFAULT) -> np.ndarray:
    """Gaussian blur 7×7, σ=2 of each map in (B, h, w) float32, all at once.

    ``border``: OpenCV's default (reflect-101, the lab's) or ``cv2.BORDER_CONSTANT`` (zeros: no animal outside the
    frame). The reflected border counts a peak two cells from the edge twice and can move the argmax onto the
    edge row — on small maps (a 320×256 frame gives 8×10 cells) the centroid then jumps by 2 cells (64 px).
    """
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    out = np.empty_like(maps)
    for s in range(0, len(maps), 256):  # OpenCV filters take ≤ 512 channels
        chunk = np.ascontiguousarray(maps[s:s + 256].transpose(1, 2, 0))
        blurred = cv2.GaussianBlur(chunk, (7, 7), 2, borderType=border)
        out[s:s + 256] = blurred.reshape(chunk.shape).transpose(2, 0, 1)
    return out


def _quadratic_offset(left: np.ndarray, mid: np.ndarray, right: np.ndarray) -> np.ndarray:
    denom = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


def _refine(maps: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quadratic sub-cell offsets at integer peaks (iy, ix) of maps (N, h, w); edges get 0 offset."""
    n, h, w = maps.shape
    idx = np.arange(n)
    m = maps.astype(np.float64)
    mid = m[idx, iy, ix]
    l_x, r_x = m[idx, iy, np.clip(ix - 1, 0, w - 1)], m[idx, iy, np.clip(ix + 1, 0, w - 1)]
    u_y, d_y = m[idx, np.clip(iy - 1, 0, h - 1), ix], m[idx, np.clip(iy + 1, 0, h - 1), ix]
    dx = np.where((ix > 0) & (ix < w - 1), _quadratic_offset(l_x, mid, r_x), 0.0)
    dy = np.where((iy > 0) & (iy < h - 1), _quadratic_offset(u_y, mid, d_y), 0.0)
    return dx, dy


def parse_centernet(maps: np.ndarray, subpixel: bool = False) -> np.ndarray:
    """CenterNet output maps (B, h, w) (already blurred) → centroids (B, 2) ``[u, v]`` full-res px.

    subpixel=False: int64, ``u = 32·argmax(max over rows)``, ``v = 32·argmax(max over cols)`` (docs/algorithms.md §D.1).
    subpixel=True: float64, refined around the same peak.
    """
    ix = np.argmax(maps.max(axis=1), axis=1)
    iy = np.argmax(maps.max(axis=2), axis=1)
    if not subpixel:
        return np.stack([ix, iy], axis=1).astype(np.int64) * CENTERNET_STRIDE
    dx, dy = _refine(maps, iy, ix)
    return np.stack([ix + dx, iy + dy], axis=1) * CENTERNET_STRIDE


def parse_hrnet(heatmaps: np.ndarray, subpixel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """HRNet heatmaps (B, K, h, w) → crop coordinates uv (B, K, 2), confidence (B, K) in [0, 1] (docs/algorithms.md §D.2).

    subpixel=False: ``uv = 2·(idx mod w, idx div w)`` of the flattened argmax (integers as float64).
    """
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b * k, h * w)
    idx = np.argmax(flat, axis=1)
    conf = np.clip(flat[np.arange(b * k), idx], 0.0, 1.0).reshape(b, k)
    ix, iy = idx % w, idx // w
    u, v = ix.astype(np.float64), iy.astype(np.float64)
    if subpixel:
        dx, dy = _refine(heatmaps.reshape(b * k, h, w), iy, ix)
        u, v = u + dx, v + dy
    uv = np.stack([u, v], axis=1).reshape(b, k, 2) * HRNET_STRIDE
    return uv, conf
