"""The HTML report: built through ``python -m mck step=report`` and checked in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mck.report import ReportData, SessionQC, build_html
from mck.steps import qc
from tests.conftest import make_project, run_mck
from tests.qc.helpers import session_outputs

S1, S2, CAL = "20240422_J04301", "20240422_J04302", "20240422_calibration"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("SKIPPED LOUDLY: no chromium on PATH (.ci/system-deps.sh installs it); browser test not run")
    return exe


def browse(exe: str, url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp / 'chromium-profile'}", *args, url],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def built_report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    root = make_project(tmp / "data", frames=4)
    o = session_outputs(root / S1, S1, frames=4)
    shutil.copy(o["calibration"], root / CAL / f"{CAL}.camera_params.h5")
    videos = {c: str(root / S1 / f"{S1}.{c}.mp4") for c in o["keypoints"]}
    qc.run(S1, videos, o["keypoints"], str(root / CAL / f"{CAL}.camera_params.h5"), str(root / S1 / f"{S1}.qc.json"),
           triangulation_path=str(root / S1 / f"{S1}.robust_triangulation.npy"),
           gimbal_path=str(root / S1 / f"{S1}.gimbal.npy"), progress=False, overlay_scale=1.0)
    run_mck(["step=report"], root, tmp, check=True)
    return root / "report" / "index.html"


def test_report_content(built_report):
    page = built_report.read_text()
    assert "<table id='status-table'>" in page and "data-step='qc'" in page
    assert f"id='session-{S1}'" in page and f"id='session-{S2}'" in page
    assert "no QC yet" in page  # S2 has no qc.json
    assert page.count("data:image/png;base64,") == len(qc.PLOTS)  # self-contained: images embedded
    assert f"{S1}.qc/overlay.mp4" in page
    assert "Timing" in page and CAL in page


def test_report_escapes_and_links():
    data = ReportData("<p>", "now", [{"step": "qc", "variant": "qc.json", "level": "session",
                                      "counts": {"failed": 1}, "failed": [{"item": "s", "error": "<b>bad</b>"}],
                                      "items": {"s": "failed"}}], [], [],
                      [SessionQC("s", {"plots": {"x": {"png": "s.qc/x.png", "caption": "c"}}}, "/d/s/s.qc")])
    page = build_html(data, "/d/report", embed_images=False)
    assert "&lt;b&gt;bad&lt;/b&gt;" in page and "<b>bad" not in page
    assert "src='../s/s.qc/x.png'" in page


@pytest.mark.browser
def test_report_renders_in_chromium(built_report, tmp_path):
    exe = chromium()
    proc = browse(exe, built_report.as_uri(), tmp_path, "--dump-dom")
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mck report: demo" in dom
    assert "id=\"status-table\"" in dom and "id=\"timing-table\"" in dom
    assert dom.count("<img") == len(qc.PLOTS) and "overlay video" in dom


@pytest.mark.browser
def test_report_screenshot_not_blank(built_report, tmp_path):
    import cv2

    exe = chromium()
    shot = tmp_path / "shot.png"
    proc = browse(exe, built_report.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.exists(), proc.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2000, 1280)
    grey = img.mean(axis=2)
    assert grey.std() > 10 and (grey < 128).mean() > 0.005  # text, tables and plots drawn, not a blank page
    # the status table's coloured cells rendered (done = light green #cfe8cf)
    assert (np.abs(img.astype(int) - [0xcf, 0xe8, 0xcf]).sum(axis=2) < 6).sum() > 100
