"""Overlay-video frames: the cameras' views in a grid, 2D detections coloured by confidence (red = 0 → green = 1)
and the 3D skeleton reprojected into every view (white lines). Pure: arrays in, an RGB ``uint8`` image out."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confidence_color(c: float) -> tuple[int, int, int]:
    """RGB colour for a confidence in [0, 1]: red (0) → yellow (0.5) → green (1); grey for NaN."""
    if not np.isfinite(c):
        return (128, 128, 128)
    c = float(np.clip(c, 0, 1))
    return (int(255 * min(1, 2 * (1 - c))), int(255 * min(1, 2 * c)), 0)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) for ``n`` views: 6 → 2 × 3."""
    cols = int(np.ceil(np.sqrt(n * 1.5)))
    cols = min(cols, n) or 1
    return int(np.ceil(n / cols)), cols


def draw_view(image: np.ndarray | None, size: tuple[int, int], scale: float, label: str,
              uv: np.ndarray | None = None, conf: np.ndarray | None = None,
              skeleton_uv: np.ndarray | None = None, edges: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """One view, resized by ``scale``: ``uv`` ``(K, 2)`` px with ``conf`` ``(K,)``; ``skeleton_uv`` ``(N, 2)`` px."""
    import cv2

    h, w = size
    oh, ow = max(2, int(round(h * scale))), max(2, int(round(w * scale)))
    if image is None:
        out = np.zeros((oh, ow, 3), np.uint8)
        cv2.putText(out, "no video", (10, oh // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 60, 60), 1, cv2.LINE_AA)
    else:
        img = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
        out = cv2.resize(np.ascontiguousarray(img), (ow, oh), interpolation=cv2.INTER_AREA)
    radius = max(2, int(round(4 * max(scale, 0.5))))
    if skeleton_uv is not None:
        pts = np.asarray(skeleton_uv, float) * scale
        for a, b in edges:
            pa, pb = pts[a], pts[b]
            if np.all(np.isfinite(pa)) and np.all(np.isfinite(pb)) and np.all(np.abs(np.r_[pa, pb]) < 1e5):
                cv2.line(out, tuple(int(round(v)) for v in pa), tuple(int(round(v)) for v in pb), (255, 255, 255),
                         max(1, radius // 2), cv2.LINE_AA)
    if uv is not None:
        pts = np.asarray(uv, float) * scale
        cs = np.full(len(pts), np.nan) if conf is None else np.asarray(conf, float)
        for p, c in zip(pts, cs):
            if np.all(np.isfinite(p)) and np.all(np.abs(p) < 1e5):
                cv2.circle(out, (int(round(p[0])), int(round(p[1]))), radius, confidence_color(c), -1, cv2.LINE_AA)
    cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def compose(views: Sequence[np.ndarray], caption: str = "") -> np.ndarray:
    """Tile equally-sized RGB views into a grid (black padding), even width/height for H.264, optional caption."""
    import cv2

    rows, cols = grid_shape(len(views))
    vh = max(v.shape[0] for v in views)
    vw = max(v.shape[1] for v in views)
    bar = 24 if caption else 0
    H, W = rows * vh + bar, cols * vw
    H += H % 2
    W += W % 2
    out = np.zeros((H, W, 3), np.uint8)
    for i, v in enumerate(views):
        r, c = divmod(i, cols)
        out[bar + r * vh: bar + r * vh + v.shape[0], c * vw: c * vw + v.shape[1]] = v
    if caption:
        cv2.putText(out, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
