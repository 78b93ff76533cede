"""``python -m mck status --timing``: predicted compute hours per step, measured where jobs ran."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_mck


def _rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["step", "level"])
    return {ln.split()[0]: ln.split() for ln in lines[start + 1:] if ln and not ln.startswith("total")}


def test_timing_predicts_hours_per_step_and_session(tiny_project: Path, tmp_path: Path):
    run_mck(["step=probe", "-m", "video=glob(*J04301*)"], tiny_project, tmp_path, check=True)
    text = run_mck(["status", "--timing"], tiny_project, tmp_path, check=True).stdout
    rows = _rows(text)
    assert rows["probe"][1] == "video" and rows["probe"][2] == "12" and rows["probe"][3] == "144"  # 12 videos × 12
    assert rows["probe"][5] == "measured"                                   # 6 finished jobs with frame counts
    assert rows["gimbal"][5] == "configured" and rows["gimbal"][1] == "session"
    assert "over 2 session(s)" in text and "h per session" in text
    one = run_mck(["status", "--timing", "--session-frames", "216000"], tiny_project, tmp_path, check=True).stdout
    rows = _rows(one)
    assert "calibration" not in rows and "train_hrnet" not in rows        # once per project, not per session
    assert rows["hrnet"][2] == "6" and rows["hrnet"][3] == str(6 * 216000)
    assert abs(float(rows["gimbal"][-1]) - 216000 * 0.08 / 3600) < 0.01    # configured sec_per_frame 0.08
    assert one.splitlines()[-1].startswith("total for one session:")
