"""The refine_calibration and sync_check steps and their use by triangulation (calibration_source, sync=auto) on
a keypoints-only synthetic project: step functions called directly, and once through the CLI (compile wiring,
job records, status)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mck.calibration_io import load_camera_params
from mck.geometry import rodrigues
from tests.conftest import CAMERAS, run_mck
from tests.sync.project import CALIBRATION, keypoints_project

S1, S2 = "20240422_J04301", "20240422_J04302"


def _kp(root: Path, session: str) -> dict:
    return {c: str(root / session / f"{session}.{c}.keypoints.h5") for c in CAMERAS}


def _angles(a, b):
    R, Q = rodrigues(a[:, :3]), rodrigues(b[:, :3])
    return np.degrees(np.arccos(np.clip((np.trace(R @ np.swapaxes(Q, 1, 2), axis1=1, axis2=2) - 1) / 2, -1, 1)))


def test_refine_calibration_step_writes_beside_the_board(tmp_path):
    from mck.steps import refine_calibration

    root = tmp_path / "data"
    made = keypoints_project(root, {S1: {}, S2: {}}, frames=300, perturb=True)
    board = root / CALIBRATION / f"{CALIBRATION}.camera_params.h5"
    before = board.read_bytes()
    out = root / CALIBRATION / f"{CALIBRATION}.camera_params.refined.h5"
    outs = [str(out), str(out).replace("camera_params.refined.h5", "refine_calibration.json"),
            str(out).replace("camera_params.refined.h5", "refine_calibration.png")]
    metrics = refine_calibration.run({S1: _kp(root, S1), S2: _kp(root, S2)}, str(board), str(out), outs,
                                     data_root=str(root), n_points=2000, item=CALIBRATION)
    assert board.read_bytes() == before                                   # never overwritten
    _, ext, _ = load_camera_params(out, CAMERAS)
    assert _angles(made["extrinsics"], made["rig"].extrinsics).max() > 9
    assert _angles(ext, made["rig"].extrinsics).max() < 0.3
    summary = json.loads(Path(outs[1]).read_text())
    assert summary["accepted"] and summary["sessions"] == [S1, S2]
    assert summary["after"]["median_px"] < 0.25 * summary["before"]["median_px"]
    assert set(summary["per_camera"]) == set(CAMERAS)
    assert Path(outs[2]).stat().st_size > 5000
    assert metrics["accepted"]


def test_refine_calibration_without_enough_points_keeps_the_board(tmp_path):
    from mck.steps import refine_calibration

    root = tmp_path / "data"
    keypoints_project(root, {S1: {}}, frames=30)
    board = root / CALIBRATION / f"{CALIBRATION}.camera_params.h5"
    out = root / CALIBRATION / f"{CALIBRATION}.camera_params.refined.h5"
    outs = [str(out), str(out)[:-3] + ".json", str(out)[:-3] + ".png"]
    metrics = refine_calibration.run({S1: _kp(root, S1)}, str(board), str(out), outs, conf_threshold=0.999,
                                     item=CALIBRATION)
    assert not metrics["accepted"] and metrics["reason"].startswith("not refined")
    assert np.allclose(load_camera_params(out)[1], load_camera_params(board)[1])
    # a calibration no session uses: done, board cameras, the reason in the summary (a pipeline does not fail)
    metrics = refine_calibration.run({}, str(board), str(out), outs, item=CALIBRATION)
    assert not metrics["accepted"] and "no session" in metrics["reason"]


def test_sync_check_and_triangulation_with_sync_auto(tmp_path):
    from mck.steps import sync_check, triangulation

    root = tmp_path / "data"
    keypoints_project(root, {S1: {"drop": {"side2": [211]}}, S2: {"late": {"side4": 1}}}, frames=600)
    calib = str(root / CALIBRATION / f"{CALIBRATION}.camera_params.h5")
    found = {}
    for s in (S1, S2):
        out = root / s / f"{s}.sync.json"
        metrics = sync_check.run(_kp(root, s), calib, None, str(out), [str(out), str(out)[:-5] + ".png"], item=s)
        found[s] = json.loads(out.read_text())
        assert not metrics["ok"]
    f1 = [(f["camera_name"], f["kind"], f["offset"], f["start"]) for f in found[S1]["findings"]]
    assert ("side2", "offset change", -1, 211) in f1 and ("side2", "frame count", None, None) in f1
    assert "side2 is 1 frame ahead from frame 211" in found[S1]["findings"][0]["message"]
    f2 = [(f["camera_name"], f["kind"], f["offset"], f["start"]) for f in found[S2]["findings"]]
    assert ("side4", "constant offset", -1, 0) in f2
    # without an alignment file the cameras disagree: refused, unless sync=auto uses the detection
    out = root / S1 / f"{S1}.robust_triangulation.npy"
    with pytest.raises(Exception, match="different frame counts"):
        triangulation.run(_kp(root, S1), calib, None, str(out), item=S1)
    metrics = triangulation.run(_kp(root, S1), calib, None, str(out), sync="auto",
                                sync_path=str(root / S1 / f"{S1}.sync.json"), item=S1)
    assert metrics["sync"].startswith("auto") and metrics["calibration"] == "board"
    assert metrics["frames"] == 600
    with h5py.File(root / S1 / f"{S1}.triangulation.h5") as f:
        err = f["reprojection_error"][()]
    assert np.nanmedian(err[300:, 2]) < 4.0                               # side2 after the drop fits again
    # the session's QC shows the sync plot and findings
    from mck.steps import qc

    videos = {c: str(root / S2 / f"{S2}.{c}.mp4") for c in CAMERAS}
    qc_out = root / S2 / f"{S2}.qc.json"
    qc.run(S2, videos, _kp(root, S2), calib, str(qc_out), sync_path=str(root / S2 / f"{S2}.sync.json"),
           make_overlay=False, progress=False)
    shown = json.loads(qc_out.read_text())
    assert shown["plots"]["sync"]["png"] == f"{S2}.sync.png" and (root / S2 / f"{S2}.sync.png").is_file()
    assert any("side4 is 1 frame ahead from the start" in m for m in shown["sync"]["findings"])


def test_clean_session_no_false_alarm(tmp_path):
    from mck.steps import sync_check

    root = tmp_path / "data"
    keypoints_project(root, {S1: {}}, frames=600, seed=7)
    out = root / S1 / f"{S1}.sync.json"
    metrics = sync_check.run(_kp(root, S1), str(root / CALIBRATION / f"{CALIBRATION}.camera_params.h5"), None,
                             str(out), [str(out), str(out)[:-5] + ".png"], item=S1)
    assert metrics["ok"] and metrics["findings"] == []


@pytest.mark.slow
def test_cli_refined_calibration_sync_status_and_records(tmp_path):
    root = tmp_path / "data"
    keypoints_project(root, {S1: {"drop": {"side2": [300]}}}, frames=600, perturb=True)
    run_mck(["step=refine_calibration", f"calibration={CALIBRATION}", "step.func_kwargs.n_points=2000"], root,
            tmp_path, check=True)
    assert (root / CALIBRATION / f"{CALIBRATION}.camera_params.refined.h5").is_file()
    run_mck(["step=sync_check", f"session={S1}", "project.calibration_source=refined"], root, tmp_path, check=True)
    run_mck(["step=triangulation", f"session={S1}", "project.calibration_source=refined", "project.sync=auto"],
            root, tmp_path, check=True)
    record = json.loads((root / ".mck/records/triangulation/robust_triangulation.npy" / f"{S1}.json").read_text())
    assert record["metrics"]["calibration"] == "refined"
    assert record["metrics"]["sync"].startswith("auto")
    status = run_mck(["status"], root, tmp_path, check=True).stdout
    assert f"sync_check {S1}: side2 is 1 frame ahead from frame 300" in status
    run_mck(["step=report"], root, tmp_path, check=True)
    page = (root / "report" / "index.html").read_text()
    assert "triangulation used the refined calibration" in page
    assert "sync check: side2 is 1 frame ahead from frame 300" in page
    assert "refined on the keypoints of 1 session(s)" in page
