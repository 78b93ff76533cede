"""Step ``compression`` (video level): re-encode a raw video with ffmpeg into ``{video}.compressed.mp4``, verify it,
and only then (and only with ``replace_original=true``) put it in place of the original.

Verification, before anything else happens: the new file decodes completely, has the same number of frames, the
same frame size and the same duration (frames / fps, within one frame) as the original. Replacing the original is
a rename-into-place: the verified file is linked (or copied) next to the original under a temporary name, then
``os.replace`` swaps it in, so at every moment the original path holds either the untouched original or the
complete verified re-encode. Without ``replace_original`` the raw video is opened read-only and never modified.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mck.errors import InputError, StepError
from mck.io import atomic_path
from mck.video import count_frames, video_info


def ffmpeg_command(src: str, dst: str, codec: str = "libx264", crf: int = 23, preset: str = "medium",
                   pix_fmt: str = "yuv420p", threads: int = 0) -> list[str]:
    """The ffmpeg command line that re-encodes ``src`` into ``dst`` (video only, every frame kept, no re-timing)."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src, "-map", "0:v:0",
           "-c:v", codec, "-fps_mode", "passthrough"]
    if codec in ("libx264", "libx265"):
        cmd += ["-crf", str(crf), "-preset", str(preset)]
    cmd += ["-pix_fmt", pix_fmt, "-threads", str(threads), "-an", "-progress", "pipe:1", "-nostats", dst]
    return cmd


def encode(src: str, dst: str, *, frames: int | None = None, progress: bool = True, **options) -> None:
    """Run ffmpeg ``src`` → ``dst`` with a tqdm progress bar over frames. Raises StepError if ffmpeg fails."""
    if shutil.which("ffmpeg") is None:
        raise StepError("ffmpeg is not installed", path=src,
                        fix="install ffmpeg (apt-get install ffmpeg, or `module load ffmpeg` on the cluster)")
    from tqdm import tqdm

    cmd = ffmpeg_command(src, dst, **options)
    with tempfile.TemporaryFile() as err, \
            tqdm(total=frames, unit="frame", desc=f"compress {Path(src).name}", disable=not progress) as bar:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        done = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("frame="):
                with contextlib.suppress(ValueError):
                    now = int(line.split("=", 1)[1])
                    bar.update(max(0, now - done))
                    done = max(done, now)
        rc = proc.wait()
        if rc != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip().splitlines()
            raise StepError(f"ffmpeg failed ({rc}): {message[-1] if message else 'no message'}", path=src,
                            fix="check the codec/preset settings and that the video decodes")


def verify(original: str, candidate: str, *, frames: int | None = None) -> dict:
    """Check that ``candidate`` decodes fully with the same frame count, frame size and duration as ``original``.

    ``frames`` is the original's decoded frame count if already known (else it is decoded here). Returns the
    numbers compared; raises StepError naming the first mismatch.
    """
    a = video_info(original)
    if frames is None:
        frames = count_frames(original)
    try:
        b = video_info(candidate)
        new_frames = count_frames(candidate)
    except InputError as exc:
        raise StepError(f"re-encoded file does not decode: {exc.what}", path=candidate) from exc
    checks = {"frames": (frames, new_frames), "width": (a.width, b.width), "height": (a.height, b.height)}
    for name, (want, got) in checks.items():
        if want != got:
            raise StepError(f"verification failed: {name} {got} in the re-encode, {want} in the original",
                            path=candidate, fix="the original is untouched; check the ffmpeg settings")
    dur_a = frames / a.fps if a.fps else None
    dur_b = new_frames / b.fps if b.fps else None
    if dur_a is None or dur_b is None or abs(dur_a - dur_b) > 1.0 / max(a.fps, 1e-9):
        raise StepError(f"verification failed: duration {dur_b} s in the re-encode, {dur_a} s in the original",
                        path=candidate, fix="the original is untouched; check the frame rate")
    return {"frames": new_frames, "width": b.width, "height": b.height, "duration_s": dur_b, "fps": b.fps}


def replace_into_place(new: str, original: str) -> None:
    """Swap ``new`` in at ``original``'s path atomically; ``original`` stays intact until the rename succeeds."""
    original_p = Path(original)
    fd, tmp = tempfile.mkstemp(prefix=f".{original_p.name}.replacing-", dir=original_p.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(new, tmp)  # same file system: no extra space
        except OSError:
            shutil.copy2(new, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, original)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def run(video_path: str, output_path: str, item: str = "", codec: str = "libx264", crf: int = 23,
        preset: str = "medium", replace_original: bool = False, progress: bool = True,
        log: logging.Logger | None = None) -> dict:
    """Re-encode ``video_path`` into ``output_path`` (verified); replace the original only if asked."""
    src = str(video_path)
    if not os.path.isfile(src):
        raise InputError("video not found", item=item, path=src)
    before = os.stat(src)
    info = video_info(src)
    try:
        frames = count_frames(src)
    except InputError as exc:
        raise InputError(exc.what, item=item, path=src, fix="the original does not decode; not compressing it") \
            from exc
    if Path(output_path).resolve() == Path(src).resolve():
        raise InputError("output path is the original video", item=item, path=src,
                         fix="compression writes a new file; use replace_original=true to swap it in")
    with atomic_path(output_path) as tmp:
        encode(src, str(tmp), frames=frames, progress=progress, codec=codec, crf=crf, preset=preset)
        checked = verify(src, str(tmp), frames=frames)
    new_size = os.path.getsize(output_path)
    replaced = False
    if replace_original:
        after = os.stat(src)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise StepError("the original changed while it was being compressed; not replacing it", item=item,
                            path=src, fix="re-run the step once the file is no longer being written")
        replace_into_place(output_path, src)
        replaced = True
    if log:
        log.info("%s: %d frames %s → %s bytes (%.1f%%), replaced=%s", item, frames, before.st_size, new_size,
                 100.0 * new_size / max(before.st_size, 1), replaced)
    return {"nframes": frames, "original_bytes": before.st_size, "compressed_bytes": new_size,
            "ratio": new_size / max(before.st_size, 1), "codec": codec, "crf": crf, "preset": preset,
            "original_codec": info.codec, "replaced_original": replaced, **{f"verified_{k}": v
                                                                            for k, v in checked.items()}}
