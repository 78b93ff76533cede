"""Compression: verified re-encode, refusal cases, and the original untouched unless replace_original=true."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from mck.errors import StepError
from mck.steps import compression
from mck.video import count_frames, video_info
from tests.conftest import make_project, run_mck, write_tiny_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="ffmpeg not installed (.ci/system-deps.sh installs it)")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_compress_writes_verified_copy_and_leaves_original(tmp_path):
    src = tmp_path / "a.mp4"
    write_tiny_video(src, 15)
    before = sha(src)
    out = tmp_path / "out" / "a.compressed.mp4"
    m = compression.run(str(src), str(out), item="a", preset="veryfast", progress=False)
    assert sha(src) == before
    assert count_frames(out) == 15 and m["verified_frames"] == 15 and not m["replaced_original"]
    info = video_info(out)
    assert (info.width, info.height) == (64, 48)


def test_replace_original_only_after_verification(tmp_path):
    src = tmp_path / "a.mp4"
    write_tiny_video(src, 10)
    out = tmp_path / "a.compressed.mp4"
    m = compression.run(str(src), str(out), preset="veryfast", replace_original=True, progress=False)
    assert m["replaced_original"]
    assert sha(src) == sha(out) and count_frames(src) == 10
    assert not list(tmp_path.glob(".*replacing*")) and not list(tmp_path.glob(".*partial*"))


def test_verification_failure_leaves_original_untouched(tmp_path, monkeypatch):
    src = tmp_path / "a.mp4"
    write_tiny_video(src, 10)
    before = sha(src)
    real_encode = compression.encode

    def drop_frames(s, d, **kw):  # an encoder that loses frames: must be caught before anything happens
        real_encode(s, d, **kw)
        from mck.video import iter_frames, write_video

        frames = list(iter_frames(d))[:-3]
        Path(d).unlink()
        write_video(d, frames)

    monkeypatch.setattr(compression, "encode", drop_frames)
    out = tmp_path / "a.compressed.mp4"
    with pytest.raises(StepError, match="frames 7 in the re-encode, 10"):
        compression.run(str(src), str(out), preset="veryfast", replace_original=True, progress=False)
    assert sha(src) == before
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_verify_rejects_other_frame_size(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_tiny_video(a, 5)
    write_tiny_video(b, 5, size=(32, 64))
    with pytest.raises(StepError, match="height"):
        compression.verify(str(a), str(b))


def test_undecodable_candidate_is_refused(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_tiny_video(a, 5)
    b.write_bytes(b"not a video")
    with pytest.raises(StepError, match="does not decode"):
        compression.verify(str(a), str(b))


def test_ffmpeg_failure_is_a_step_error(tmp_path):
    src = tmp_path / "a.mp4"
    write_tiny_video(src, 5)
    with pytest.raises(StepError, match="ffmpeg failed"):
        compression.run(str(src), str(tmp_path / "o.mp4"), codec="no_such_codec", progress=False)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_entry_point_never_modifies_raw_videos(tmp_path):
    root = make_project(tmp_path / "data", sessions=("20240422_J04301",), frames=6, calibration=None)
    videos = sorted(root.rglob("*.mp4"))
    before = {p: sha(p) for p in videos}
    run_mck(["step=probe", "-m", "video=glob(*)"], root, tmp_path, check=True)
    run_mck(["step=compression", "-m", "video=glob(*)", "step.func_kwargs.preset=veryfast"], root, tmp_path,
            check=True)
    assert {p: sha(p) for p in videos} == before
    compressed = sorted(root.rglob("*.compressed.mp4"))
    assert len(compressed) == 6
    assert all(count_frames(p) == 6 for p in compressed)
