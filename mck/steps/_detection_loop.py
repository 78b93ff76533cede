"""Shared video loop of the ``centernet`` and ``hrnet`` steps: background decode, batches, checkpoint/resume.

Batches start at multiples of ``batch_size`` from frame 0 and a checkpoint is written after the batch that
crosses each multiple of ``save_every``; a resumed run therefore sees exactly the batches of an uninterrupted
run and writes an identical output.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mck.errors import InputError
from mck.io import atomic_path
from mck.runtime import Preempted, stop_requested
from mck.video import iter_batches, iter_frames


def checkpoint_path(output_path: str) -> Path:
    return Path(str(output_path) + ".checkpoint.npz")


def _save_checkpoint(path: Path, arrays: dict[str, np.ndarray], next_frame: int, meta: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, __next__=np.int64(next_frame), __meta__=np.array(meta), **arrays)


def _load_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: str, log) -> int:
    if not path.exists():
        return 0
    try:
        with np.load(path) as z:
            if str(z["__meta__"]) != meta or any(z[k].shape != v.shape or z[k].dtype != v.dtype
                                                 for k, v in arrays.items()):
                raise ValueError("checkpoint from different settings")
            for k in arrays:
                arrays[k][...] = z[k]
            start = int(z["__next__"])
    except Exception as exc:  # stale or corrupt: start over
        if log:
            log.warning("ignoring checkpoint %s (%s)", path, exc)
        return 0
    if log:
        log.info("resuming from frame %d (checkpoint %s)", start, path.name)
    return start


def run_video(video_path: str, total: int, arrays: dict[str, np.ndarray],
              process: Callable[[int, np.ndarray], dict[str, np.ndarray]], *, output_path: str, batch_size: int,
              save_every: int, meta: str, item: str = "", log: logging.Logger | None = None) -> dict:
    """Fill ``arrays[k][t0:t1] = process(t0, frames)[k]`` for all frames ``0 <= t < total``, with checkpoints.

    Returns metrics: frames processed in this run, seconds, frames/s, resumed-from frame.
    """
    ckpt = checkpoint_path(output_path)
    start = _load_checkpoint(ckpt, arrays, meta, log)
    batch_size = max(1, int(batch_size))
    save_every = max(1, int(save_every))
    t = start
    t0 = time.perf_counter()
    last_log = t0
    for frames in iter_batches(iter_frames(video_path, start, total, prefetch=2 * batch_size), batch_size):
        n = len(frames)
        out = process(t, frames)
        for k, v in out.items():
            arrays[k][t:t + n] = v
        before, t = t, t + n
        if t < total and (t // save_every > before // save_every or stop_requested()):
            _save_checkpoint(ckpt, arrays, t, meta)
            if stop_requested():
                raise Preempted(f"{item}: stopped at frame {t} of {total}; checkpoint {ckpt.name}")
        now = time.perf_counter()
        if log and now - last_log > 10:
            log.info("%s: %d/%d frames, %.1f frames/s", item, t, total, (t - start) / (now - t0))
            last_log = now
    if t < total:
        raise InputError(f"video is shorter than expected: {t} frames decode, {total} expected", item=item,
                         path=video_path, fix="the video is truncated (re-copy it) or the centroid/probe file is "
                         "from another video (delete it and re-run)")
    seconds = time.perf_counter() - t0
    return {"frames": total, "frames_processed": t - start, "resumed_from": start, "seconds": round(seconds, 3),
            "frames_per_s": round((t - start) / seconds, 2) if seconds > 0 else None}


def remove_checkpoint(output_path: str) -> None:
    try:
        os.remove(checkpoint_path(output_path))
    except FileNotFoundError:
        pass
