"""Calibration QC (mck.calibration.qc): quiet on a good calibration; each deliberately bad one fires its check.
Corners are the synthetic rig's true projections plus 0.15 px noise (no rendering), so every case takes seconds."""

from __future__ import annotations

import numpy as np
import pytest

from mck.calibration import bundle_adjust, calibrate
from mck.calibration.qc import calibration_qc, failed_checks
from mck.synth import board
from mck.synth.rig import make_rig
from mck.synth.writer import board_truth

SIZE = (320, 256)


@pytest.fixture(scope="module")
def truth():
    rig = make_rig(SIZE, 0)
    rvecs, tvecs = board.board_poses(150, np.random.default_rng(101), rig=rig)
    gt = board_truth(rig, rvecs, tvecs)
    rng = np.random.default_rng(3)
    uv = np.transpose(gt["uv"], (1, 0, 2, 3)) + rng.normal(0, 0.15, (6, 150, 35, 2))
    uv[~gt["in_view"].T] = np.nan
    return rig, uv


def _qc(rig, corners, square=board.SQUARE, keep_outliers=False, **kw):
    obj = board.object_points(board.BOARD_SHAPE, square)
    sizes = [SIZE] * 6
    ext, intr, poses, _ = calibrate(corners, obj, sizes, names=list(rig.names))
    # keep_outliers: what the calibration step falls back to when a camera would lose every view
    loose = {"outlier_threshold": 1e9, "outlier_px": 1e9} if keep_outliers else {}
    res = bundle_adjust(corners, ext, intr, obj, poses, names=list(rig.names), **loose)
    return calibration_qc(corners, rig.names, sizes, res.extrinsics, res.intrinsics, obj, res.board_poses,
                          res.frames, res.views, rejected=res.rejected, **kw)


def _checks(qc, camera=None):
    return {w["check"] for w in qc["warnings"] if camera is None or w["camera"] == camera}


def test_quiet_on_a_good_calibration(truth):
    rig, uv = truth
    qc = _qc(rig, uv)
    assert qc["ok"], failed_checks(qc)
    assert qc["cameras"]["side1"]["rms_px"] < 0.4
    assert all(info["best_shift_frames"] == 0 for info in qc["cameras"].values())
    assert set(qc["pairs"]) and qc["pairs"]["top-side1"] > 0


def test_too_few_frames_in_one_camera(truth):
    rig, uv = truth
    bad = uv.copy()
    seen = np.flatnonzero(np.isfinite(bad[3]).all(axis=(1, 2)))
    bad[3, seen[14:]] = np.nan                                       # side3 keeps 14 views
    qc = _qc(rig, bad)
    assert "frames" in _checks(qc, "side3") or "coverage" in _checks(qc, "side3")
    message = next(w for w in qc["warnings"] if w["camera"] == "side3")
    assert message["message"].startswith("side3: board in 14 frames covering")
    assert "side3's corners" in message["fix"]
    assert not _checks(qc, "side1")


def test_one_camera_shifted_in_time(truth):
    rig, uv = truth
    bad = uv.copy()
    bad[2] = np.roll(uv[2], 3, axis=0)                               # side2's video 3 frames late
    with pytest.raises(ValueError, match="side2"):                 # every side2 view is an outlier
        _qc(rig, bad)
    qc = _qc(rig, bad, keep_outliers=True)
    assert "sync" in _checks(qc, "side2"), failed_checks(qc)
    assert qc["cameras"]["side2"]["best_shift_frames"] == -3
    assert "sync" not in _checks(qc, "top")


def test_wrong_square_size(truth):
    rig, uv = truth
    qc = _qc(rig, uv, square=1.25)                                   # cm typed for mm
    assert "geometry" in _checks(qc), failed_checks(qc)
    assert any("square_size" in w["fix"] for w in qc["warnings"])


def test_downstream_steps_and_status_see_failed_checks(tmp_path, caplog):
    """A calibration whose QC failed: ``warn_if_failed_qc`` (triangulation, gimbal) logs each check with its fix."""
    import json
    import logging

    from mck.calibration_io import calibration_qc_path, calibration_warnings, warn_if_failed_qc

    cal = tmp_path / "20240422_calibration.camera_params.h5"
    assert calibration_qc_path(cal).name == "20240422_calibration.calibration_qc.json"
    assert calibration_warnings(cal) == []                          # no QC file: nothing to say
    calibration_qc_path(cal).write_text(json.dumps({"ok": False, "warnings": [
        {"camera": "side3", "check": "coverage", "message": "side3: board in 14 frames covering 22% of the image",
         "fix": "move the board through side3's corners"}]}))
    with caplog.at_level(logging.WARNING, logger="mck"):
        lines = warn_if_failed_qc(cal, logging.getLogger("mck"), "20240422_J04301")
    assert lines == ["side3: board in 14 frames covering 22% of the image (move the board through side3's corners)"]
    assert "failed a QC check" in caplog.text and "side3's corners" in caplog.text
