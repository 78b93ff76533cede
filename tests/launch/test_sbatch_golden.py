"""The sbatch scripts mck submits, per launcher config, against golden files (pure: no cluster needed).

Regenerate after an intended change with ``MCK_UPDATE_GOLDEN=1 pytest tests/launch/test_sbatch_golden.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mck.compile import Job
from mck.config import CONF_DIR
from mck.launch import slurm

GOLDEN = Path(__file__).parent / "golden"


def launcher_params(name: str) -> dict:
    """A launcher YAML with its ``defaults`` (same group) merged, as Hydra composes it."""
    cfg = OmegaConf.load(CONF_DIR / "hydra" / "launcher" / f"{name}.yaml")
    merged = OmegaConf.create()
    for entry in cfg.pop("defaults", []):
        if entry != "_self_":
            merged = OmegaConf.merge(merged, launcher_params(str(entry)))
    merged = OmegaConf.merge(merged, cfg)
    merged.submitit_folder = "/sweep/.submitit/%j"
    return OmegaConf.to_container(merged)


def hrnet_job() -> Job:
    return Job(step="hrnet", output_name="keypoints.h5", level="video", item="20240422_J04301.top",
               session="20240422_J04301", outputs=[], time_min=314, mem="4GB", ncpus=2, gpu=True)


def probe_job() -> Job:
    return Job(step="probe", output_name="probe.json", level="video", item="20240422_J04301.top",
               session="20240422_J04301", outputs=[], time_min=10, mem="2GB", ncpus=1, gpu=False)


@pytest.mark.parametrize("launcher", ["slurm", "o2_cpu", "o2_gpu"])
@pytest.mark.parametrize("which", ["hrnet", "probe"])
def test_sbatch_script_matches_golden(launcher, which):
    job = hrnet_job() if which == "hrnet" else probe_job()
    params = launcher_params(launcher)
    if launcher == "o2_gpu":
        params["gpu_exclude"] = ["compute-g-16-175", "compute-g-16-176"]
    built = slurm.slurm_parameters(job, params, ["gcc/9.2.0", "ffmpeg"], "multicamera_keypoints")
    text = slurm.sbatch_script(built, "/sweep/.submitit/%j", command="python -u -m submitit.core._submit %t")
    golden = GOLDEN / f"{launcher}.{which}.sbatch"
    if os.environ.get("MCK_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"missing golden file {golden} (generate it with MCK_UPDATE_GOLDEN=1)"
    assert text == golden.read_text()


def test_o2_gpu_resources():
    built = slurm.slurm_parameters(hrnet_job(), launcher_params("o2_gpu"), [], None)
    assert built["partition"] == "gpu_quad,gpu" and built["qos"] == "gpuquad_qos" and built["gres"] == "gpu:1"
    assert built["time"] == 314 and built["mem"] == "4GB" and built["cpus_per_task"] == 2
    assert built["job_name"] == "mck.hrnet.20240422_J04301.top"
    cpu = slurm.slurm_parameters(probe_job(), launcher_params("o2_gpu"), [], None)
    assert cpu["partition"] == "short" and "gres" not in cpu and "qos" not in cpu


def test_fit_to_cluster_drops_unknown_partitions_and_nodes():
    facts = slurm.ClusterFacts(frozenset({"short", "gpu_quad"}), frozenset({"localhost"}))
    params, notes = slurm.fit_to_cluster({"partition": "gpu_quad,gpu", "exclude": "compute-g-1,localhost"}, facts)
    assert params == {"partition": "gpu_quad", "exclude": "localhost"}
    assert notes and "gpu" in notes[0]
    params, _ = slurm.fit_to_cluster({"partition": "gpu", "exclude": "compute-g-1"}, facts)
    assert params == {}


def test_setup_lines_load_modules_and_activate_conda():
    lines = slurm.setup_lines(["gcc/9.2.0"], "multicamera_keypoints", "/opt/conda")
    assert lines[0].startswith("module load gcc/9.2.0")
    assert "source /opt/conda/etc/profile.d/conda.sh && conda activate multicamera_keypoints" in lines[1]


def test_arrays_are_chunked_to_max_array_size():
    assert [len(c) for c in slurm.chunks(list(range(2500)), 1000)] == [1000, 1000, 500]
