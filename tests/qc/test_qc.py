"""QC numbers, plots and overlay from synthetic outputs in the lab formats; missing inputs give placeholders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mck.qc import metrics, overlay, plots
from mck.skeleton import KEYPOINT_NAMES
from mck.steps import qc
from tests.conftest import write_tiny_video
from tests.qc.helpers import CAMERAS, session_outputs


def test_metrics_by_hand():
    uv = np.zeros((3, 1, 2, 2))
    uv[1, 0, 0] = [3, 4]
    uv[2, 0, 1] = np.nan
    d = metrics.displacement_2d(uv)
    assert d[0, 0, 0] == 5 and d[1, 0, 0] == 5 and np.isnan(d[1, 0, 1])
    pos = np.zeros((2, 3, 3))
    pos[:, 1, 0] = 10
    assert np.allclose(metrics.bone_lengths(pos, [(0, 1), (0, 2)]), [[10, 0], [10, 0]])
    assert np.allclose(metrics.missing_fraction(uv), [[0, 1 / 3]])
    assert metrics.nan_stats([np.nan])["median"] is None


def test_gimbal_node_order_round_trip():
    from mck.skeleton import MOUSE

    pts = np.arange(2 * 15 * 3, dtype=float).reshape(2, 15, 3)
    idx = [KEYPOINT_NAMES.index(MOUSE.bodyparts[i]) for i in MOUSE.node_order]
    back = qc.gimbal_to_hrnet(pts[:, idx])
    assert np.isnan(back[:, 0]).all() and np.allclose(back[:, 1:], pts[:, 1:])


def test_overlay_frame_is_even_and_draws(tmp_path):
    img = np.zeros((48, 64), np.uint8)
    views = [overlay.draw_view(img, (48, 64), 1.0, cam, np.array([[10.0, 10.0], [np.nan, 1]]), np.array([1.0, 0.2]),
                               np.array([[5.0, 5.0], [40.0, 30.0]]), [(0, 1)]) for cam in CAMERAS]
    frame = overlay.compose(views, "caption")
    assert frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0 and frame.shape[2] == 3
    assert frame.reshape(-1, 3).max(axis=0)[1] == 255  # a green (confident) detection was drawn


def _session_paths(folder, session):
    """The 3D inputs the compiler would bind (they may not exist: QC then draws placeholders)."""
    return {"triangulation_path": str(folder / f"{session}.robust_triangulation.npy"),
            "gimbal_path": str(folder / f"{session}.gimbal.npy"),
            "triangulation_details_path": str(folder / f"{session}.triangulation.h5")}


def _videos(folder, session, frames):
    out = {}
    for i, cam in enumerate(CAMERAS):
        p = folder / f"{session}.{cam}.mp4"
        write_tiny_video(p, frames, value0=20 * i)
        out[cam] = str(p)
    return out


def test_qc_full_session(tmp_path):
    o = session_outputs(tmp_path, "S", frames=8)
    videos = _videos(tmp_path, "S", 8)
    out = tmp_path / "S.qc.json"
    m = qc.run("S", videos, o["keypoints"], o["calibration"], str(out), **_session_paths(tmp_path, "S"),
               overlay_scale=1.0, progress=False)
    result = json.loads(out.read_text())
    assert result["missing_inputs"] == {}
    for name in qc.PLOTS:
        assert (tmp_path / "S.qc" / f"{name}.png").stat().st_size > 1000
        assert result["plots"][name]["placeholder"] is None
    # detections are the exact projections + 0.5 px noise: reprojection error is small
    assert m["reprojection_median_px"] < 1.5
    assert set(result["reprojection"]["median_px_per_camera"]) == set(CAMERAS)
    from mck.video import count_frames, video_info

    ov = tmp_path / "S.qc" / "overlay.mp4"
    assert count_frames(ov) == 8 and video_info(ov).width == 3 * 64


def test_qc_session_missing_inputs_gets_placeholders(tmp_path):
    o = session_outputs(tmp_path, "S", frames=5, gimbal=False, triangulation=False)
    (tmp_path / "S.camera_params.h5").unlink()
    (tmp_path / "S.side2.keypoints.h5").unlink()
    out = tmp_path / "S.qc.json"
    qc.run("S", {}, o["keypoints"], o["calibration"], str(out), **_session_paths(tmp_path, "S"), progress=False)
    result = json.loads(out.read_text())
    miss = result["missing_inputs"]
    assert {"triangulation", "gimbal", "calibration", "keypoints.side2"} <= set(miss)
    assert "not found" in result["plots"]["reprojection"]["placeholder"] or \
        "needs" in result["plots"]["reprojection"]["placeholder"]
    assert result["plots"]["confidence"]["placeholder"] is None  # the other five cameras still plotted
    assert result["overlay"]["written"] is False
    for name in qc.PLOTS:
        assert (tmp_path / "S.qc" / f"{name}.png").exists()


def test_qc_nothing_at_all(tmp_path):
    out = tmp_path / "S.qc.json"
    qc.run("S", {}, {c: str(tmp_path / f"S.{c}.keypoints.h5") for c in CAMERAS}, None, str(out),
           **_session_paths(tmp_path, "S"), progress=False)
    result = json.loads(out.read_text())
    assert all(p["placeholder"] for p in result["plots"].values())


def test_every_plot_has_title_units_caption():
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=(20, 6, 15))
    uv = rng.normal(size=(20, 6, 15, 2))
    figs = [plots.confidence(conf, CAMERAS, KEYPOINT_NAMES), plots.jumps(uv, CAMERAS, KEYPOINT_NAMES),
            plots.reprojection(np.abs(uv[..., 0]), CAMERAS, KEYPOINT_NAMES),
            plots.bone_lengths({"triangulation": rng.uniform(size=(20, 13))}, [str(i) for i in range(13)]),
            plots.missing((conf > 0.5).mean(0), {"triangulation": (conf[:, 0] > 0.5).mean(0)}, CAMERAS,
                          KEYPOINT_NAMES),
            plots.calibration(CAMERAS, rng.normal(size=(6, 3)), rng.uniform(size=6))]
    for fig in figs:
        assert fig._suptitle.get_text()
        assert any(t.get_text().startswith("Good") for t in fig.texts)
        labelled = [ax for ax in fig.axes if ax.get_ylabel() and "(" in ax.get_ylabel() + ax.get_xlabel()]
        assert labelled, fig._suptitle.get_text()
