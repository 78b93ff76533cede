"""Item locks and job records: one owner at a time, stale owners are taken over, records land atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mck import layout, records
from mck.inventory import Settings, match_calibration, split_video_name
from mck.io import save_json


def test_lock_is_exclusive_and_stale_locks_are_taken_over(tmp_path):
    root = str(tmp_path)
    lock, owner = records.try_lock(root, "hrnet", "keypoints.h5", "S.top")
    assert lock is not None and owner is None
    # another process on this host that is alive holds it → refused, with the owner named
    path = layout.lock_path(root, "hrnet", "keypoints.h5", "S.top")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        save_json(path, {"host": records.HOST, "pid": sleeper.pid, "job_id": f"local-x-{sleeper.pid}"})
        second, owner = records.try_lock(root, "hrnet", "keypoints.h5", "S.top")
        assert second is None and owner["pid"] == sleeper.pid
        assert records.lock_owner(root, "hrnet", "keypoints.h5", "S.top")["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    # its owner died (kill -9): the lock is stale and the next job takes it over
    third, owner = records.try_lock(root, "hrnet", "keypoints.h5", "S.top")
    assert third is not None and owner is None
    assert json.loads(path.read_text())["pid"] == os.getpid()
    third.release()
    assert not path.exists()


def test_records_go_to_run_dir_and_latest(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rec = {"step": "probe", "output_name": "probe.json", "item": "S.top", "state": "done"}
    records.write_record(rec, str(run_dir), str(tmp_path / "out"))
    assert json.loads((run_dir / "job.json").read_text())["state"] == "done"
    assert records.read_record(str(tmp_path / "out"), "probe", "probe.json", "S.top")["item"] == "S.top"
    assert not list(run_dir.glob(".*partial*"))


def test_video_names_and_calibration_matching():
    assert split_video_name("20240422_J04301.top.mp4", ("mp4", "avi")) == ("20240422_J04301", "top")
    assert split_video_name("20240422_J04301.top.keypoints.h5", ("mp4", "avi")) is None
    assert split_video_name("notes.txt", ("mp4",)) is None
    settings = Settings(data_root="/x", output_root="/x")
    calibs = {"20240422_calib": None, "20240501_calib_a": None, "20240501_calib_b": None}
    assert match_calibration(settings, "20240422_J04301", calibs) == ("20240422_calib", None)
    name, error = match_calibration(settings, "20240501_X", calibs)
    assert name is None and "ambiguous" in error
    mapped = Settings(data_root="/x", output_root="/x", calibration_map=(("20240501_X", "20240501_calib_b"),))
    assert match_calibration(mapped, "20240501_X", calibs) == ("20240501_calib_b", None)
    url = mapped.to_url()
    assert Settings.from_url(url) == mapped
