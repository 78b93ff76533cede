"""Step ``probe`` (video level): check that a video decodes and cache what later steps need.

Writes ``{video}.probe.json``: frames (decoded count), header_frames, fps, width, height, codec, duration_s.
Later steps read the frame count from here (time limits, validation) instead of re-reading the video.
"""

from __future__ import annotations

import logging

from mck.errors import InputError
from mck.io import save_json
from mck.video import count_frames, video_info


def run(video_path: str, output_path: str, item: str = "", decode_all: bool = True,
        log: logging.Logger | None = None) -> dict:
    """Probe one video. ``decode_all=False`` trusts the container's frame count (fast, less safe)."""
    info = video_info(video_path)
    if info.width <= 0 or info.height <= 0:
        raise InputError("video has no frame size", item=item, path=video_path, fix="re-export the video")
    try:
        frames = count_frames(video_path) if decode_all else info.frames
    except InputError as exc:
        raise InputError(exc.what, item=item, path=video_path, fix=exc.fix) from exc
    if frames <= 0:
        raise InputError("video has no decodable frames", item=item, path=video_path,
                         fix="the file is empty or truncated; re-copy it from the acquisition machine")
    if info.frames > 0 and decode_all and frames < info.frames:
        raise InputError(f"video is truncated: header says {info.frames} frames, only {frames} decode",
                         item=item, path=video_path, fix="re-copy the file from the acquisition machine")
    result = {"video": item, "path": video_path, "frames": frames, "header_frames": info.frames, "fps": info.fps,
              "width": info.width, "height": info.height, "codec": info.codec,
              "duration_s": frames / info.fps if info.fps else None}
    save_json(output_path, result)
    if log:
        log.info("%s: %d frames %dx%d @ %.2f fps (%s)", item, frames, info.width, info.height, info.fps, info.codec)
    return {"frames": frames, "fps": info.fps}
