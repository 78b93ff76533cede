"""The SLURM path against a real (local) cluster: ``bash ../shared/slurm/start-local-slurm.sh`` starts it
(``make test`` does this in CI). Skipped, loudly, where no cluster answers."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, make_project, run_mck, status_json

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ENV = {"PYTHONPATH": str(REPO)}
FAKE = "step.wrap_params.func_path=tests.spine.stepfuncs."


@pytest.fixture(scope="module", autouse=True)
def cluster():
    try:
        ok = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("SLURM IS NOT RUNNING: start it with `bash ../shared/slurm/start-local-slurm.sh` (root, apt)")


def squeue() -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%j|%l|%T|%P"], capture_output=True, text=True)
    return [line.split("|") for line in out.stdout.splitlines() if line.strip()]


def wait_for_queue_empty(timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not squeue():
            return
        time.sleep(1)
    raise AssertionError(f"jobs still queued after {timeout} s: {squeue()}")


def test_card_command_runs_one_job_per_session(tiny_project: Path, tmp_path: Path):
    args = ["step=triangulation", "~step.inputs.keypoints_paths", "~step.inputs.calibration_path",
            "step.output_info.also=[]", FAKE + "count_calls",
            "hydra/launcher=o2_gpu",
            "-m", "video=glob(*)"]
    proc = run_mck(args, tiny_project, tmp_path, env=ENV, check=True)
    assert "submitted 2 jobs" in proc.stdout and "2 items: 2 done" in proc.stdout
    for session in ("20240422_J04301", "20240422_J04302"):
        assert (tiny_project / session / "calls.log").read_text().split() == [session]
        rec = json.loads((tiny_project / ".mck/records/triangulation/robust_triangulation.npy"
                          / f"{session}.json").read_text())
        assert rec["state"] == "done" and rec["slurm_job_id"] and rec["node"]
        assert Path(rec["run_dir"], ".hydra", "config.yaml").exists()


def test_per_job_time_limits_no_double_submission_and_cancel(tmp_path: Path):
    data = make_project(tmp_path / "data", sessions=("20240422_A",), frames=30, calibration=None)
    make_project(data, sessions=("20240422_B",), frames=10, calibration=None)
    args = ["step=probe", FAKE + "count_calls", "+step.func_kwargs.sleep_s=120", "step.slurm_params.sec_per_frame=60",
            "step.slurm_params.min_minutes=15", "step.slurm_params.mem=100M", "hydra/launcher=o2_cpu",
            "hydra.launcher.wait=false", "-m", "video=glob(*top)"]
    try:
        proc = run_mck(args, data, tmp_path, env=ENV, check=True)
        assert "submitted 2 jobs in 2 resource group(s)" in proc.stdout
        limits = {row[1]: row[2] for row in squeue()}
        assert limits == {"mck.probe.20240422_A.top": "30:00", "mck.probe.20240422_B.top": "15:00"}, squeue()
        again = run_mck(args, data, tmp_path, env=ENV, check=True)
        assert "nothing to submit (2 running)" in again.stdout
        st = status_json(data, tmp_path)[("probe", "probe.json")]
        assert st["counts"]["running"] == 2
        assert {r["job_id"] for r in st["running"]} == {row[0] for row in squeue()}
        cancel = run_mck(["cancel", "step=probe"], data, tmp_path, check=True)
        assert cancel.stdout.count("mck: cancelled probe") == 2
        wait_for_queue_empty(60)
        st = status_json(data, tmp_path)[("probe", "probe.json")]
        assert st["counts"]["failed"] == 2 and "cancelled by user" in st["failed"][0]["error"]
    finally:
        subprocess.run(["scancel", "--name=mck.probe.20240422_A.top"], capture_output=True)
        subprocess.run(["scancel", "--name=mck.probe.20240422_B.top"], capture_output=True)


def test_failure_is_recorded_and_only_failed_items_resubmitted(tiny_project: Path, tmp_path: Path):
    base = ["step=probe", "hydra/launcher=slurm", "step.slurm_params.mem=100M", "-m", "video=glob(*J04301*)"]
    run_mck(base[:-1] + ["video=glob(*J04301.top)"], tiny_project, tmp_path, check=True)
    proc = run_mck(base + [FAKE + "explode"], tiny_project, tmp_path, env=ENV)
    assert proc.returncode == 1 and "6 items: 5 failed, 1 skip" in proc.stdout
    st = status_json(tiny_project, tmp_path)[("probe", "probe.json")]
    assert st["counts"]["done"] == 1 and st["counts"]["failed"] == 5
    assert st["failed"][0]["error"].startswith("RuntimeError: boom in 20240422_J04301")
    text = run_mck(["status"], tiny_project, tmp_path, check=True).stdout
    assert "failed  probe 20240422_J04301.side1: RuntimeError: boom" in text
    proc = run_mck(base + ["time_scale=1.5"], tiny_project, tmp_path, check=True)
    assert "submitted 5 jobs" in proc.stdout and "6 items: 5 done, 1 skip" in proc.stdout
    rec = json.loads((tiny_project / ".mck/records/probe/probe.json/20240422_J04301.side1.json").read_text())
    assert rec["time_limit_min"] == 15  # min_minutes 10 × time_scale 1.5


def test_timeout_requeues_and_resumes_from_checkpoint(tiny_project: Path, tmp_path: Path):
    """A job that reaches its time limit gets SIGUSR2, is requeued by submitit and resumes from its checkpoint;
    the output equals an uninterrupted run's."""
    import os
    import sys

    args = ["step=probe", FAKE + "resumable_counter", "+step.func_kwargs.steps=45", "+step.func_kwargs.step_s=1.0",
            "step.slurm_params.min_minutes=1", "step.slurm_params.mem=100M", "hydra/launcher=slurm",
            "hydra.launcher.signal_delay_s=30", "-m", "video=20240422_J04301.top"]
    env = {**os.environ, **ENV, "MCK_DATA_ROOT": str(tiny_project)}
    proc = subprocess.Popen([sys.executable, "-m", "mck", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 400
    while proc.poll() is None and time.time() < deadline:
        # SLURM holds a requeued job for a while (Reason=BeginTime); release it at once to keep the test short
        for job_id, *_ in (row for row in squeue() if row[3] == "PENDING"):
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
        time.sleep(2)
    out_text = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out_text
    assert "1 items: 1 done" in out_text
    out = tiny_project / "20240422_J04301" / "20240422_J04301.top.probe.json"
    assert json.loads(out.read_text())["done"] == list(range(45))
    starts = json.loads(Path(str(out) + ".starts.json").read_text())["starts"]
    assert starts >= 2, "the job should have been interrupted by its 1-minute limit and resumed"


@pytest.fixture(scope="module")
def gimbal_project(tmp_path_factory):
    from tests.gimbal.project import make_detected_project

    base = tmp_path_factory.mktemp("slurm_gimbal")
    data = make_detected_project(base / "data")
    run_mck(["step=triangulation", "-m", "session=glob(*)"], data, base, check=True)
    run_mck(["step=fit_gimbal", "step.func_kwargs.num_states=4", "step.func_kwargs.num_iters=50"], data, base,
            check=True)
    return data


GIMBAL_SHORT = ["step.func_kwargs.n_iters=40", "step.func_kwargs.burn_in=20"]


def test_the_card_command_runs_real_gimbal_jobs_on_slurm(gimbal_project: Path, tmp_path: Path):
    """`python -m mck step=gimbal hydra/launcher=o2_gpu -m video='glob(*)'` exactly as on the card: the 12 videos
    collapse to their 2 sessions, each a GPU-partition job running the real GIMBAL step (on CPU here)."""
    from tests.gimbal.project import SESSIONS

    data = gimbal_project
    proc = run_mck(["step=gimbal", "hydra/launcher=o2_gpu", *GIMBAL_SHORT, "-m", "video=glob(*)"], data, tmp_path,
                   check=True, timeout=600)
    assert "submitted 2 jobs" in proc.stdout, proc.stdout
    for session in SESSIONS:
        assert np.load(data / session / f"{session}.gimbal.npy").shape == (60, 14, 3)
        rec = json.loads((data / ".mck/records/gimbal/gimbal.npy" / f"{session}.json").read_text())
        assert rec["state"] == "done" and rec["slurm_job_id"] and rec["partition"] == "gpu_quad", rec


@pytest.mark.parametrize("launcher,partition", [("slurm", "short"), ("o2_cpu", "short")])
def test_generic_and_cpu_launchers_run_gimbal(gimbal_project: Path, tmp_path: Path, launcher: str, partition: str):
    from tests.gimbal.project import SESSIONS

    session = SESSIONS[0]
    proc = run_mck(["step=gimbal", f"hydra/launcher={launcher}", *GIMBAL_SHORT, "overwrite=true", "-m",
                    f"session={session}"], gimbal_project, tmp_path, check=True, timeout=600)
    assert "submitted 1 job" in proc.stdout, proc.stdout
    rec = json.loads((gimbal_project / ".mck/records/gimbal/gimbal.npy" / f"{session}.json").read_text())
    assert rec["state"] == "done" and rec["partition"] == partition, rec


def test_hrnet_card_command_one_job_per_video(tmp_path: Path):
    from tests.reliability.test_reliability import HRNET_FAST, _hrnet_project

    data = _hrnet_project(tmp_path)
    proc = run_mck(["step=hrnet", "hydra/launcher=o2_gpu", *HRNET_FAST, "-m", "video=glob(*)"], data, tmp_path,
                   check=True, timeout=600)
    assert "submitted 6 jobs" in proc.stdout and "6 items: 6 done" in proc.stdout, proc.stdout
    assert len(list(data.rglob("*.keypoints.h5"))) == 6
