"""Realistic calibration footage (mck.synth.realism): levels, rendering and its ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from mck.synth import board, realism, render
from mck.synth.rig import make_rig
from mck.synth.writer import board_truth


def test_levels():
    assert realism.LEVELS == ("clean", "realistic", "hard")
    assert realism.level("hard").exposure > realism.level("realistic").exposure > 0
    with pytest.raises(ValueError, match="unknown realism level"):
        realism.level("photo")


def test_realistic_frames_dark_with_leds_and_a_board_where_the_truth_says():
    rig = make_rig((320, 256), 0)
    rvecs, tvecs = board.board_poses(6, np.random.default_rng(1), rig=rig, keyframe_every=10)
    gt = board_truth(rig, rvecs, tvecs)
    assert gt["uv"].shape == (6, 6, 35, 2) and gt["in_view"].shape == (6, 6)
    c = 1
    cam = render.CameraRays(rig.Ks[c], rig.dists[c], rig.extrinsics[c], rig.size)
    frames = list(realism.board_frames(cam, "side1", rvecs, tvecs, realism.REALISTIC, seed=3))
    assert len(frames) == 6 and frames[0].dtype == np.uint8 and frames[0].shape == (256, 320)
    f = frames[0].astype(float)
    assert np.median(f) < 40                                       # IR-dark arena
    leds = realism.splat_leds(cam, realism.led_points(5, 4242), (256, 320))
    assert leds.max() > 200                                        # saturated LED dots in this camera
    if gt["in_view"][0, c]:                                        # the board is bright where its corners project
        u, v = np.round(gt["uv"][0, c].mean(0)).astype(int)
        assert f[v - 2:v + 3, u - 2:u + 3].mean() > np.median(f) + 20
