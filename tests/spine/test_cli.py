"""The spine through the real entry point: ``python -m mck`` in a subprocess on a tiny project on disk."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, make_project, run_mck, status_json

SESSIONS = ("20240422_J04301", "20240422_J04302")
FAKE_SESSION_STEP = ["step=triangulation", "~step.inputs.keypoints_paths", "~step.inputs.calibration_path",
                     "step.output_info.also=[]",
                     "step.wrap_params.func_path=tests.spine.stepfuncs.count_calls"]
ENV = {"PYTHONPATH": str(REPO)}


def calls(data: Path, session: str) -> list[str]:
    path = data / session / "calls.log"
    return path.read_text().split() if path.exists() else []


def test_probe_sweep_over_all_videos_then_skips_done(tiny_project: Path, tmp_path: Path):
    proc = run_mck(["step=probe", "-m", "video=glob(*)"], tiny_project, tmp_path, check=True)
    assert "12 items: 12 done" in proc.stdout
    probe = json.loads((tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.top.probe.json").read_text())
    assert probe["frames"] == 12 and probe["width"] == 64 and probe["height"] == 48
    again = run_mck(["-m", "step=probe", "video=glob(*)"], tiny_project, tmp_path, check=True)
    assert "12 items: 12 skip" in again.stdout


def test_glob_subset_and_single_run(tiny_project: Path, tmp_path: Path):
    proc = run_mck(["step=probe", "-m", "video=glob(*J04302.side*)"], tiny_project, tmp_path, check=True)
    assert "4 items: 4 done" in proc.stdout
    single = run_mck(["step=probe", "video=20240422_J04301.top"], tiny_project, tmp_path, check=True)
    assert single.returncode == 0
    assert (tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.top.probe.json").exists()
    assert not (tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.side1.probe.json").exists()


def test_calibration_videos_are_not_videos(tiny_project: Path, tmp_path: Path):
    proc = run_mck(["step=probe", "-m", "video=glob(*calib*)"], tiny_project, tmp_path)
    assert proc.returncode == 2
    assert "no video matches" in proc.stderr


def test_unknown_item_lists_close_matches(tiny_project: Path, tmp_path: Path):
    proc = run_mck(["step=probe", "video=20240422_J0431.top"], tiny_project, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("mck: error: no video named '20240422_J0431.top'")
    assert "did you mean: 20240422_J04301.top" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_new_video_on_disk_is_an_option_on_the_next_run(tiny_project: Path, tmp_path: Path):
    make_project(tiny_project, sessions=("20240423_J05000",), calibration=None, frames=5)
    proc = run_mck(["step=probe", "-m", "video=glob(20240423_*)"], tiny_project, tmp_path, check=True)
    assert "6 items: 6 done" in proc.stdout
    shutil.rmtree(tiny_project / "20240423_J05000")
    gone = run_mck(["step=probe", "video=20240423_J05000.top"], tiny_project, tmp_path)
    assert gone.returncode == 2 and "no video named" in gone.stderr


def test_session_step_swept_over_videos_runs_once_per_session(tiny_project: Path, tmp_path: Path):
    proc = run_mck([*FAKE_SESSION_STEP, "-m", "video=glob(*)"], tiny_project, tmp_path, check=True, env=ENV)
    assert "2 items: 2 done" in proc.stdout
    assert calls(tiny_project, SESSIONS[0]) == [SESSIONS[0]]
    assert calls(tiny_project, SESSIONS[1]) == [SESSIONS[1]]
    out = json.loads((tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.robust_triangulation.npy.args.json").read_text())
    assert out["args"] == ["alignment_path", "calibration_source", "conf_threshold", "method",
                           "refined_calibration_path", "sync", "sync_path"]
    rerun = run_mck([*FAKE_SESSION_STEP, "-m", "session=glob(*)"], tiny_project, tmp_path, check=True, env=ENV)
    assert "2 skip" in rerun.stdout and calls(tiny_project, SESSIONS[0]) == [SESSIONS[0]]
    forced = run_mck([*FAKE_SESSION_STEP, "overwrite=true", "session=20240422_J04301"], tiny_project, tmp_path,
                     check=True, env=ENV)
    assert forced.returncode == 0 and calls(tiny_project, SESSIONS[0]) == [SESSIONS[0]] * 2


def test_blocked_items_are_reported_not_run(tiny_project: Path, tmp_path: Path):
    args = ["step=hrnet", "step.wrap_params.func_path=tests.spine.stepfuncs.count_calls", "-m", "video=glob(*)"]
    proc = run_mck(args, tiny_project, tmp_path, check=True, env=ENV)
    assert "12 items: 12 blocked" in proc.stdout
    assert not calls(tiny_project, SESSIONS[0])
    st = status_json(tiny_project, tmp_path)
    assert st[("hrnet", "keypoints.h5")]["counts"]["blocked"] == 12


def test_dry_run_prints_the_job_table_and_runs_nothing(tiny_project: Path, tmp_path: Path):
    proc = run_mck(["step=centernet", "dry_run=true", "-m", "video=glob(*)"], tiny_project, tmp_path, check=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("centernet")]
    assert len(lines) == 12
    assert all(" blocked " in ln and "waiting for " in ln and "probe " in ln for ln in lines)
    run_mck(["step=probe", "-m", "video=glob(*)"], tiny_project, tmp_path, check=True)
    proc = run_mck(["step=centernet", "dry_run=true", "-m", "video=glob(*)"], tiny_project, tmp_path, check=True)
    assert sum("waiting for train_centernet" in ln for ln in proc.stdout.splitlines()) == 12
    weights = tmp_path / "lab_centernet.pth"     # pre-trained weights elsewhere: no edge to train_centernet
    weights.write_bytes(b"x")
    proc = run_mck(["step=centernet", "dry_run=true", f"project.weights.centernet={weights}", "-m", "video=glob(*)"],
                   tiny_project, tmp_path, check=True)
    header = proc.stdout.splitlines()[0].split()
    assert header[:5] == ["step", "item", "action", "time", "mem"]
    assert sum(" run " in ln for ln in proc.stdout.splitlines()) == 12
    assert not list(tiny_project.glob("*/*.centroid.npy"))


def test_time_limit_scales_with_frames(tmp_path: Path):
    data = make_project(tmp_path / "data", sessions=("20240422_A",), frames=30, calibration=None)
    make_project(data, sessions=("20240422_B",), frames=10, calibration=None)
    args = ["step=probe", "step.slurm_params.sec_per_frame=60", "step.slurm_params.min_minutes=15",
            "dry_run=true", "-m", "video=glob(*top)"]
    proc = run_mck(args, data, tmp_path, check=True)
    rows = {ln.split()[1]: ln.split()[3] for ln in proc.stdout.splitlines() if ln.startswith("probe")}
    assert rows == {"20240422_A.top": "30m", "20240422_B.top": "15m"}
    proc = run_mck(args + ["time_scale=1.5"], data, tmp_path, check=True)
    rows = {ln.split()[1]: ln.split()[3] for ln in proc.stdout.splitlines() if ln.startswith("probe")}
    assert rows == {"20240422_A.top": "45m", "20240422_B.top": "23m"}


def test_failed_job_is_recorded_and_reported(tiny_project: Path, tmp_path: Path):
    args = [*FAKE_SESSION_STEP[:4], "step.wrap_params.func_path=tests.spine.stepfuncs.explode", "-m",
            "session=glob(*)"]
    proc = run_mck(args, tiny_project, tmp_path, env=ENV)
    assert proc.returncode == 1
    assert "boom in 20240422_J04301" in proc.stderr
    st = status_json(tiny_project, tmp_path)
    tri = st[("triangulation", "robust_triangulation.npy")]
    assert tri["counts"]["failed"] == 2
    assert tri["failed"][0]["error"] == "RuntimeError: boom in 20240422_J04301"
    text = run_mck(["status"], tiny_project, tmp_path, check=True).stdout
    assert "failed  triangulation 20240422_J04301: RuntimeError: boom in 20240422_J04301" in text


def test_truncated_video_fails_only_that_item(tiny_project: Path, tmp_path: Path):
    victim = tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.side2.mp4"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    proc = run_mck(["step=probe", "-m", "video=glob(*)"], tiny_project, tmp_path)
    assert proc.returncode == 1
    assert "11 done" in proc.stdout and "1 failed" in proc.stdout
    assert f"{SESSIONS[0]}.side2" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.side2.probe.json").exists()


def test_bad_override_type_is_one_line(tiny_project: Path, tmp_path: Path):
    proc = run_mck(["step=probe", "video=20240422_J04301.top", "step.slurm_params.ncpus=many"], tiny_project,
                   tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "ncpus=many" in proc.stderr and "Integer" in proc.stderr
    proc = run_mck(["step=probe", "video=20240422_J04301.top", "step.func_kwargs.decode_all=maybe"], tiny_project,
                   tmp_path)
    assert proc.returncode == 1
    assert "mck: error: 20240422_J04301.top: step.func_kwargs.decode_all='maybe': expected true or false" in proc.stderr
    proc = run_mck(["step=probe", "video=20240422_J04301.top", "step.nonsense=1"], tiny_project, tmp_path)
    assert proc.returncode == 2 and "nonsense" in proc.stderr and "Traceback" not in proc.stderr


def test_unimplemented_step_says_so(tiny_project: Path, tmp_path: Path):
    args = ["step=qc", "step.step_dependencies=[]", "step.wrap_params.func_path=mck.steps.not_there.run",
            "session=20240422_J04301"]
    proc = run_mck(args, tiny_project, tmp_path)
    assert proc.returncode == 1
    assert "step qc is not implemented yet" in proc.stderr and "Traceback" not in proc.stderr


def test_long_override_lists_get_a_valid_run_folder(tiny_project: Path, tmp_path: Path):
    """Hydra names the run folder after the overrides; a long list overflowed the 255-byte name limit."""
    overrides = ["step.slurm_params.mem=2GB", "step.slurm_params.ncpus=1", "step.slurm_params.min_minutes=10",
                 "step.slurm_params.sec_per_frame=0.0005", "step.func_kwargs.decode_all=true",
                 "step.wrap_params.conda_env=" + "multicamera_keypoints_" * 8]
    run_mck(["step=probe", *overrides, "video=20240422_J04301.top"], tiny_project, tmp_path, check=True)
    assert (tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.top.probe.json").exists()
    sweep = run_mck(["step=probe", *overrides, "-m", "video=20240422_J04301.side1,20240422_J04301.side2"],
                    tiny_project, tmp_path, check=True)
    assert "2 items: 2 done" in sweep.stdout
    run_dirs = [*(tmp_path / "outputs" / "runs" / "probe").iterdir(),
                *(tmp_path / "outputs" / "sweeps" / "probe").glob("*/*_*")]
    assert len(run_dirs) == 3 and all(len(d.name.encode()) <= 140 for d in run_dirs)
    assert all((d / ".hydra" / "config.yaml").exists() for d in run_dirs)
    assert len({d.name for d in run_dirs}) == 3  # cut names stay distinct (a hash of the whole list)


def test_rerun_from_snapshot_with_override(tiny_project: Path, tmp_path: Path):
    run_mck(["step=probe", "video=20240422_J04301.top"], tiny_project, tmp_path, check=True)
    run_dir = next((tmp_path / "outputs" / "runs" / "probe").iterdir())
    record = json.loads((run_dir / "job.json").read_text())
    assert record["state"] == "done" and record["item"] == "20240422_J04301.top"
    assert (run_dir / ".hydra" / "config.yaml").exists()
    output = Path(record["outputs"][0])
    output.unlink()
    proc = run_mck(["rerun", str(run_dir)], None, tmp_path, check=True)
    assert "done" in proc.stdout and output.exists()
    proc = run_mck(["rerun", str(run_dir), "step.func_kwargs.decode_all=false"], None, tmp_path, check=True)
    reruns = sorted((tmp_path / "outputs" / "runs" / "probe").glob("*_rerun"))
    assert len(reruns) >= 1
    cfg_text = (reruns[-1] / ".hydra" / "config.yaml").read_text()
    assert "decode_all: false" in cfg_text and "20240422_J04301.top" in cfg_text


def test_missing_or_ambiguous_calibration_names_the_session(tmp_path: Path):
    data = make_project(tmp_path / "data", sessions=("20240501_X",), frames=4, calibration="20240422_calibration")
    args = [*FAKE_SESSION_STEP[:2], "step.output_info.also=[]",
            "step.wrap_params.func_path=tests.spine.stepfuncs.count_calls", "session=20240501_X"]
    proc = run_mck(args, data, tmp_path, env=ENV)
    assert proc.returncode == 1
    assert "20240501_X: no calibration for date 20240501" in proc.stderr
    make_project(data, sessions=(), frames=4, calibration="20240501_calib_a")
    make_project(data, sessions=(), frames=4, calibration="20240501_calib_b")
    proc = run_mck(args, data, tmp_path, env=ENV)
    assert "ambiguous calibration for date 20240501: 20240501_calib_a, 20240501_calib_b" in proc.stderr
    proc = run_mck(args + ["++project.calibration_map={20240501_X:20240501_calib_b}", "dry_run=true"], data,
                   tmp_path, env=ENV, check=True)
    assert "waiting for calibration 20240501_calib_b" in proc.stdout


def test_status_text_and_json(tiny_project: Path, tmp_path: Path):
    run_mck(["step=probe", "-m", "video=glob(*J04301*)"], tiny_project, tmp_path, check=True)
    st = status_json(tiny_project, tmp_path)
    assert st[("probe", "probe.json")]["counts"] == {"done": 6, "running": 0, "failed": 0, "pending": 6,
                                                    "blocked": 0}
    assert st[("centernet", "centroid.npy")]["counts"]["blocked"] == 12   # probe (6) or train_centernet (all)
    reasons = {b["reason"] for b in st[("centernet", "centroid.npy")]["blocked"]}
    assert any("train_centernet" in r for r in reasons), reasons
    assert st[("calibration", "camera_params.h5")]["counts"]["pending"] == 1
    text = run_mck(["status"], tiny_project, tmp_path, check=True).stdout
    assert text.splitlines()[0].split() == ["step", "variant", "level", "done", "running", "failed", "pending",
                                            "blocked"]
    assert any(ln.split()[:4] == ["probe", "probe.json", "video", "6"] for ln in text.splitlines())


def test_variants_have_their_own_outputs_and_status(tiny_project: Path, tmp_path: Path):
    run_mck(["step=probe", "-m", "video=glob(*J04301.top)"], tiny_project, tmp_path, check=True)
    proc = run_mck(["step=probe", "step.output_info.output_name=probe.v2.json", "-m", "video=glob(*J04301.top)"],
                   tiny_project, tmp_path, check=True)
    assert "1 done" in proc.stdout
    assert (tiny_project / SESSIONS[0] / f"{SESSIONS[0]}.top.probe.v2.json").exists()
    st = status_json(tiny_project, tmp_path)
    assert st[("probe", "probe.v2.json")]["counts"]["done"] == 1


def test_concurrent_launches_run_each_item_once(tiny_project: Path, tmp_path: Path):
    import subprocess
    import sys

    args = [*FAKE_SESSION_STEP, "+step.func_kwargs.sleep_s=1.0", "-m", "session=glob(*)"]
    env = {**os.environ, **ENV, "MCK_DATA_ROOT": str(tiny_project)}
    procs = [subprocess.Popen([sys.executable, "-m", "mck", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for session in SESSIONS:
        assert calls(tiny_project, session) == [session]


def test_unwritable_output_directory_is_a_clear_error(tiny_project: Path, tmp_path: Path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the output root should be")
    proc = run_mck(["step=probe", "video=20240422_J04301.top", f"project.output_root={blocker}/out"], tiny_project,
                   tmp_path)
    assert proc.returncode == 1
    assert "20240422_J04301.top: output directory" in proc.stderr and "is not writable" in proc.stderr
    assert "project.output_root" in proc.stderr and "Traceback" not in proc.stderr


def test_frame_count_mismatch_without_alignment_blocks_session_steps(tiny_project: Path, tmp_path: Path):
    from tests.conftest import write_tiny_video

    session = "20240422_J04301"
    write_tiny_video(tiny_project / session / f"{session}.side3.mp4", 9)
    run_mck(["step=probe", "-m", "video=glob(*)"], tiny_project, tmp_path, check=True)
    args = [*FAKE_SESSION_STEP, "-m", "session=glob(*)"]
    proc = run_mck(args, tiny_project, tmp_path, env=ENV)
    assert proc.returncode == 1
    assert f"{session}: cameras disagree on frame count (top 12, side1 12, side2 12, side3 9" in proc.stderr
    assert "1 done" in proc.stdout  # the other session is unaffected
    cams = ("top", "side1", "side2", "side3", "side4", "bottom")
    rows = [",".join([str(t)] + [("" if cam == "side3" and t >= 9 else str(t)) for cam in cams]) for t in range(12)]
    (tiny_project / session / "aligned_frame_numbers.csv").write_text(
        "\n".join(["trigger_number," + ",".join(cams), *rows]) + "\n")
    proc = run_mck(args, tiny_project, tmp_path, env=ENV, check=True)
    assert calls(tiny_project, session) == [session]
