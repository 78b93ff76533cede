"""The declared pipeline (issue #18): an experiment that moves the data root, a func_kwargs typo refused
before anything runs or is submitted, and ``python -m mck pipeline`` — locally and on the local SLURM cluster with
``--dependency=afterok`` — where a failed producer leaves its dependents blocked with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, make_project, run_mck, slurm_up, status_json

ENV = {"PYTHONPATH": str(REPO)}
FAKES = ["++steps.probe.wrap_params.func_path=tests.spine.stepfuncs.explode_if",
         "++steps.probe.func_kwargs.match=J04301.side2",
         "++steps.compression.wrap_params.func_path=tests.spine.stepfuncs.count_calls",
         "++steps.probe.slurm_params.mem=100M", "++steps.compression.slurm_params.mem=100M",
         "++steps.compression.slurm_params.ncpus=1"]


def test_an_experiment_moves_the_data_root(tmp_path: Path):
    make_project(tmp_path / "scratch" / "mck", frames=4)
    env = {**ENV, "MCK_SCRATCH": str(tmp_path / "scratch")}
    proc = run_mck(["step=probe", "experiment=scratch", "-m", "video=glob(*J04302*)"], None, tmp_path, check=True,
                   env={**env, "MCK_DATA_ROOT": str(tmp_path / "elsewhere")})
    assert "6 items: 6 done" in proc.stdout
    assert len(list((tmp_path / "scratch" / "mck").glob("*/*.probe.json"))) == 6
    st = json.loads(run_mck(["status", "--json", "experiment=scratch"], None, tmp_path, check=True,
                            env=env).stdout)
    probe = next(s for s in st if s["step"] == "probe")
    assert probe["counts"]["done"] == 6 and probe["counts"]["pending"] == 6


def test_a_func_kwargs_typo_is_refused_before_anything_runs(tiny_project: Path, tmp_path: Path):
    typo = ["step=probe", "+step.func_kwargs.decode_al=true", "-m", "video=glob(*)"]
    proc = run_mck([*typo, "dry_run=true"], tiny_project, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "decode_al=True is not a parameter of mck.steps.probe.run (did you mean decode_all?" in proc.stderr
    assert "Traceback" not in proc.stderr
    wrong_type = run_mck(["step=probe", "step.func_kwargs.decode_all=maybe", "-m", "video=glob(*)"], tiny_project,
                         tmp_path)
    assert wrong_type.returncode == 2 and "decode_all='maybe': expected true or false" in wrong_type.stderr
    assert "nothing was run or submitted" in wrong_type.stderr
    assert not list(tiny_project.glob("*/*.probe.json"))
    assert not (tiny_project / ".mck" / "records").exists()


@pytest.mark.slurm
def test_a_func_kwargs_typo_is_refused_by_the_slurm_launcher_before_any_submission(tiny_project: Path,
                                                                                   tmp_path: Path):
    if not slurm_up():
        pytest.skip("no local SLURM (start it with ../shared/slurm/start-local-slurm.sh)")
    step = run_mck(["step=probe", "+step.func_kwargs.decode_al=true", "hydra/launcher=slurm", "-m", "video=glob(*)"],
                   tiny_project, tmp_path)
    pipeline = run_mck(["pipeline", "only=probe,compression", "++steps.compression.func_kwargs.crf=high",
                        "hydra/launcher=slurm"], tiny_project, tmp_path)
    for proc, said in ((step, "decode_al=True is not a parameter of mck.steps.probe.run (did you mean decode_all?"),
                       (pipeline, "crf='high': expected")):
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert said in proc.stderr and "nothing was run or submitted" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*_submission.sh")), "a job script was written: something was submitted"
    assert not (tiny_project / ".mck" / "records").exists()


def _pipeline_checks(data: Path, tmp_path: Path) -> None:
    st = status_json(data, tmp_path, *FAKES)
    probe, comp = st[("probe", "probe.json")], st[("compression", "compressed.mp4")]
    assert probe["counts"]["done"] == 5 and probe["counts"]["failed"] == 1, probe
    assert comp["counts"]["done"] == 5 and comp["counts"]["blocked"] == 1, comp
    (reason,) = [b["reason"] for b in comp["blocked"]]
    assert "probe 20240422_J04301.side2 failed" in reason and "boom in 20240422_J04301.side2" in reason, reason


def test_pipeline_runs_steps_in_order_and_blocks_dependents_of_a_failure(tmp_path: Path):
    data = make_project(tmp_path / "data", sessions=("20240422_J04301",), frames=4)
    proc = run_mck(["pipeline", "only=probe,compression", *FAKES], data, tmp_path, env=ENV)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.index("step=probe") < proc.stdout.index("step=compression")
    _pipeline_checks(data, tmp_path)
    again = run_mck(["pipeline", "only=probe,compression", "dry_run=true", *FAKES], data, tmp_path, env=ENV)
    assert "probe            video        1 to run, 5 done" in again.stdout, again.stdout


@pytest.mark.slurm
def test_pipeline_on_slurm_chains_with_afterok_and_blocks_dependents_of_a_failure(tmp_path: Path):
    if not slurm_up():
        pytest.skip("no local SLURM (start it with ../shared/slurm/start-local-slurm.sh)")
    data = make_project(tmp_path / "data", sessions=("20240422_J04301",), frames=4)
    slow_probe = "++steps.probe.func_kwargs.sleep_s=10"   # still queued when compression is submitted
    proc = run_mck(["pipeline", "only=probe,compression", "hydra/launcher=slurm", *FAKES, slow_probe], data,
                   tmp_path, env=ENV, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    records = data / ".mck" / "records" / "compression" / "compressed.mp4"
    after = {p.stem: json.loads(p.read_text()).get("after") for p in records.glob("*.json")}
    probes = {p.stem: json.loads(p.read_text()) for p in (data / ".mck/records/probe/probe.json").glob("*.json")}
    chained = {video: ids for video, ids in after.items() if ids}
    assert len(chained) >= 4, after         # submitted while their probe jobs were queued: afterok on them
    for video, ids in chained.items():      # each waited on its own probe job only
        assert ids == [str(probes[video]["slurm_job_id"])], (video, ids, probes[video])
    assert "20240422_J04301.side2" in chained
    _pipeline_checks(data, tmp_path)
