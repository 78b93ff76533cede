"""mck.sync on render-free synthetic detections: an undeclared dropped frame, a camera started one frame late,
a camera with extra frames, and a clean session without a false alarm."""

from __future__ import annotations

import numpy as np
import pytest

from mck.sync import apply_offsets, describe, detect_offsets, shift_rows
from mck.synth.detections import make_detections

T = 900


@pytest.fixture(scope="module")
def det():
    return make_detections(frames=T, seed=4)


def _detect(det, uv, conf, lengths=None):
    return detect_offsets(uv, conf, det.rig.extrinsics, det.rig.intrinsics, lengths=lengths)


def _drop(det, camera: int, frame: int):
    """Camera ``camera`` loses trigger ``frame`` and nobody wrote it down: its rows slide up by one."""
    uv, conf = det.uv.copy(), det.conf.copy()
    uv[:, camera] = np.concatenate([np.delete(det.uv[:, camera], frame, 0), np.full((1, 15, 2), np.nan)])
    conf[:, camera] = np.concatenate([np.delete(det.conf[:, camera], frame, 0), np.zeros((1, 15))])
    lengths = [T] * 6
    lengths[camera] = T - 1
    return uv, conf, lengths


def test_clean_session_has_no_finding(det):
    result = _detect(det, det.uv, det.conf)
    assert result["findings"] == []
    assert all(seg == [{"start": 0, "end": T, "offset": 0}] for seg in [c["segments"] for c in result["cameras"]])


def test_undeclared_dropped_frame_found_at_its_frame(det):
    uv, conf, lengths = _drop(det, 2, 517)
    result = _detect(det, uv, conf, lengths)
    change = [f for f in result["findings"] if f["kind"] == "offset change"]
    assert [(f["camera"], f["offset"]) for f in change] == [(2, -1)]
    assert change[0]["start"] == 517                  # the lost trigger itself
    assert any(f["kind"] == "frame count" and f["camera"] == 2 for f in result["findings"])
    assert "side2 is 1 frame ahead from frame" in describe(change[0], "side2")
    # applying the detected offsets restores the rows
    fixed = apply_offsets([uv[:, 2]], [result["cameras"][2]["segments"]], T)[0]
    same = np.isfinite(fixed).all(-1) & np.isfinite(det.uv[:, 2]).all(-1)
    assert np.allclose(fixed[same], det.uv[:, 2][same])
    assert same.sum() > 0.8 * np.isfinite(det.uv[:, 2]).all(-1).sum()


def test_camera_started_one_frame_late(det):
    uv, conf = det.uv.copy(), det.conf.copy()
    uv[:, 4] = shift_rows(det.uv[:, 4], 1)          # its frame k shows trigger k + 1
    conf[:, 4] = np.nan_to_num(shift_rows(det.conf[:, 4], 1))
    result = _detect(det, uv, conf)
    assert [(f["camera"], f["offset"], f["start"], f["kind"]) for f in result["findings"]] == \
        [(4, -1, 0, "constant offset")]


def test_camera_with_extra_frames_at_the_start(det):
    uv = np.full((T + 3, 6, 15, 2), np.nan)
    conf = np.zeros((T + 3, 6, 15))
    uv[:T], conf[:T] = det.uv, det.conf
    uv[:, 1], conf[:, 1] = np.nan, 0.0
    uv[3:, 1], conf[3:, 1] = det.uv[:, 1], det.conf[:, 1]
    lengths = [T] * 6
    lengths[1] = T + 3
    result = _detect(det, uv, conf, lengths)
    kinds = {(f["camera"], f["kind"], f["offset"]) for f in result["findings"]}
    assert kinds == {(1, "constant offset", 3), (1, "frame count", None)}
    assert result["rows"] == T
