"""Reading and writing videos. Frames are ``uint8`` grey images ``(height, width)`` (the lab's IR footage is
monochrome; channel 0 is used) unless ``gray=False``.

Decoding runs in a background thread with a bounded prefetch queue so that a consumer (a network, a detector) and
the decoder overlap.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mck.errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about a video; ``frames`` is from the stream header (may be 0/unknown → -1)."""

    path: str
    frames: int
    fps: float
    width: int
    height: int
    codec: str


def video_info(path: str | Path) -> VideoInfo:
    """Read container metadata without decoding (fast). Raises InputError if the file cannot be opened."""
    import av

    path = str(path)
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            frames = int(stream.frames or -1)
            rate = stream.average_rate or stream.guessed_rate or 0
            return VideoInfo(path, frames, float(rate), stream.codec_context.width, stream.codec_context.height,
                             stream.codec_context.name)
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__
        raise InputError(f"cannot open video: {reason.strip().rstrip('.')}", path=path,
                         fix="the file is damaged or truncated; re-copy it from the acquisition machine") from exc


def _decode(path: str, start: int, stop: int | None, gray: bool) -> Iterator[np.ndarray]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index < start:
                continue
            if stop is not None and index >= stop:
                break
            if gray:
                yield frame.to_ndarray(format="gray")
            else:
                yield frame.to_ndarray(format="rgb24")


def iter_frames(path: str | Path, start: int = 0, stop: int | None = None, *, gray: bool = True,
                prefetch: int = 32) -> Iterator[np.ndarray]:
    """Yield decoded frames ``start <= index < stop`` in order, decoded in a background thread.

    ``prefetch`` bounds the queue (memory). A decoding error surfaces in the consumer as InputError naming the file
    and the frame index reached.
    """
    path = str(path)
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    done = object()
    stop_event = threading.Event()

    def worker() -> None:
        try:
            for frame in _decode(path, start, stop, gray):
                while not stop_event.is_set():
                    try:
                        q.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop_event.is_set():
                    return
            q.put(done)
        except Exception as exc:  # forwarded to the consumer
            q.put(exc)

    thread = threading.Thread(target=worker, name=f"decode:{Path(path).name}", daemon=True)
    thread.start()
    index = start
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, Exception):
                raise InputError(f"decoding failed at frame {index} ({item})", path=path,
                                 fix="the video may be truncated or corrupt; re-export or re-copy it") from item
            yield item
            index += 1
    finally:
        stop_event.set()
        thread.join(timeout=5)


def iter_batches(frames: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Group a frame iterator into arrays ``(batch, H, W[, 3])``; the last batch may be shorter."""
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def count_frames(path: str | Path) -> int:
    """Decode every frame and count them (exact, slower than ``video_info``). Raises InputError on decode errors."""
    return sum(1 for _ in iter_frames(path, prefetch=64))


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 30.0, *, crf: int = 18,
                preset: str = "veryfast", codec: str = "libx264", bit_rate: int | None = None) -> int:
    """Encode ``frames`` (grey ``(H, W)`` or RGB ``(H, W, 3)`` uint8) to an H.264 mp4 at ``path``, atomically.

    Returns the number of frames written. Width and height must be even for yuv420p. ``bit_rate`` (bit/s): average
    bit rate instead of constant quality ``crf``.
    """
    import av

    from mck.io import atomic_path

    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                frame = np.ascontiguousarray(frame)
                if stream is None:
                    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    if bit_rate:
                        stream.bit_rate = int(bit_rate)
                        stream.options = {"preset": preset}
                    else:
                        stream.options = {"crf": str(crf), "preset": preset}
                fmt = "gray" if frame.ndim == 2 else "rgb24"
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=fmt)):
                    container.mux(packet)
                count += 1
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
    return count
