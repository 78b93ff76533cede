"""SLURM job parameters for compiled jobs — one pure builder, tested against golden sbatch scripts.

``slurm_parameters`` turns a Job (its time limit, memory, cpus, gpu flag), the step's ``wrap_params`` (modules,
conda env) and the launcher config (partitions, qos, exclude list, …) into submitit ``SlurmExecutor`` parameters.
``sbatch_script`` renders them with submitit's own script builder, exactly what ``sbatch`` receives.
``fit_to_cluster`` drops partitions and excluded nodes that the cluster does not have (so the O2 launcher
configs also run on a small or local cluster), saying what it dropped.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from mck.compile import Job
from mck.errors import ConfigError

#: Launcher config keys mck understands (besides submitit's own ``submitit_folder``); anything else is an error.
LAUNCHER_KEYS = {
    "submitit_folder", "cpu_partition", "gpu_partition", "cpu_qos", "gpu_qos", "gpu_exclude", "account",
    "constraint", "signal_delay_s", "max_num_timeout", "array_parallelism", "max_array_size", "conda_base",
    "use_setup", "additional_parameters", "wait", "fit_to_cluster", "extra_setup", "force_cpu", "after_queued",
    "_target_",
}


def setup_lines(modules: Sequence[str], conda_env: str | None, conda_base: str | None) -> list[str]:
    """Shell lines that put a job into the user's cluster environment (``module load``, conda activation).

    Each line warns instead of failing where the tool is missing, so a job still runs with the interpreter
    that submitted it (submitit calls it by absolute path). Every configured value is shell-quoted, in the
    commands and in the warning text alike: a name is never executed.
    """
    for key, value in [*(("wrap_params.modules", m) for m in modules), ("wrap_params.conda_env", conda_env),
                       ("hydra.launcher.conda_base", conda_base)]:
        if value is not None and ("\n" in str(value) or "\r" in str(value)):
            raise ConfigError(f"{key}={str(value)!r} contains a line break",
                              fix="module and conda names are single words; remove the line break")
    lines = []
    for module in modules:
        m = shlex.quote(str(module))
        warn = shlex.quote(f"mck: could not module load {module}")
        lines.append(f"module load {m} 2>/dev/null || echo {warn} >&2")
    if conda_env:
        base = shlex.quote(str(conda_base)) if conda_base else '"$(conda info --base 2>/dev/null)"'
        env = shlex.quote(str(conda_env))
        warn = shlex.quote(f"mck: conda not found, not activating {conda_env}")
        lines.append(f"if [ -f {base}/etc/profile.d/conda.sh ]; then source {base}/etc/profile.d/conda.sh "
                     f"&& conda activate {env}; else echo {warn} >&2; fi")
    return lines


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def job_name(text: str) -> str:
    """A SLURM job name from a step and item: letters, digits and ``._+-`` only (others become ``_``), ≤ 200."""
    return _UNSAFE_NAME.sub("_", str(text))[:200]


def _check_one_line(params: dict[str, Any]) -> None:
    """A value with a line break would add lines to the sbatch script (``#SBATCH`` directives or commands)."""
    values = [(k, v) for k, v in params.items() if k not in ("setup",)]
    values += [(f"additional_parameters.{k}", v) for k, v in (params.get("additional_parameters") or {}).items()]
    for key, value in values:
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise ConfigError(f"hydra.launcher value {key}={value!r} contains a line break",
                              fix="SLURM parameters are single-line values; remove the line break")


def slurm_parameters(job: Job, launcher: dict[str, Any], modules: Sequence[str] = (),
                     conda_env: str | None = None, name: str | None = None) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for one job (jobs with equal parameters can share an array)."""
    gpu = bool(job.gpu) and not launcher.get("force_cpu")
    params: dict[str, Any] = {
        "job_name": job_name(name or job.label),
        "time": int(job.time_min),
        "mem": str(job.mem),
        "cpus_per_task": int(job.ncpus),
        "partition": launcher.get("gpu_partition") if gpu else launcher.get("cpu_partition"),
        "signal_delay_s": int(launcher.get("signal_delay_s", 120)),
        "array_parallelism": int(launcher.get("array_parallelism", 256)),
    }
    if gpu:
        params["gres"] = "gpu:1"
        if launcher.get("gpu_qos"):
            params["qos"] = launcher["gpu_qos"]
        exclude = launcher.get("gpu_exclude") or []
        if exclude:
            params["exclude"] = ",".join(exclude) if not isinstance(exclude, str) else exclude
    elif launcher.get("cpu_qos"):
        params["qos"] = launcher["cpu_qos"]
    for key in ("account", "constraint"):
        if launcher.get(key):
            params[key] = launcher[key]
    if launcher.get("additional_parameters"):
        params["additional_parameters"] = dict(launcher["additional_parameters"])
    setup = list(launcher.get("extra_setup") or [])   # the user's own shell lines, verbatim by design
    if launcher.get("use_setup", True):
        setup += setup_lines(modules, conda_env, launcher.get("conda_base"))
    if setup:
        params["setup"] = setup
    params = {k: v for k, v in params.items() if v is not None}
    _check_one_line(params)
    return params


def group_key(params: dict[str, Any]) -> tuple:
    """Jobs whose parameters are equal (ignoring the name) go into one array."""
    return tuple(sorted((k, repr(v)) for k, v in params.items() if k != "job_name"))


def sbatch_script(params: dict[str, Any], folder: str, command: str = "python -u -m submitit.core._submit %t",
                  map_count: int | None = None) -> str:
    """The sbatch script submitit writes for these parameters (pure: no cluster needed)."""
    from submitit.slurm.slurm import _make_sbatch_string

    return _make_sbatch_string(command=command, folder=folder, map_count=map_count, **params)


@dataclass(frozen=True)
class ClusterFacts:
    partitions: frozenset[str]
    nodes: frozenset[str]
    max_cpus: int | None = None       # the largest node's CPUs
    max_mem_mb: int | None = None     # the largest node's memory, MB


def cluster_facts() -> ClusterFacts | None:
    """Partitions and node names from ``sinfo``; None if SLURM is not reachable."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R %N"], capture_output=True, text=True, timeout=20)
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    partitions = {line.split()[0].rstrip("*") for line in out.stdout.splitlines() if line.strip()}
    cpus, mems = [], []
    try:
        sizes = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %m"], capture_output=True, text=True, timeout=20)
        for line in sizes.stdout.splitlines():
            c, _, m = line.strip().partition(" ")
            if c.isdigit() and m.strip().rstrip("+").isdigit():
                cpus.append(int(c))
                mems.append(int(m.strip().rstrip("+")))
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ClusterFacts(frozenset(partitions), frozenset(n.strip() for n in nodes.stdout.split() if n.strip()),
                        max(cpus) if cpus else None, max(mems) if mems else None)


def _mem_mb(text: str) -> float | None:
    """``'16GB'`` → 16384; ``'500M'`` → 500; None if unparseable."""
    import re

    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)B?\s*", str(text), re.IGNORECASE)
    if not m:
        return None
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    return float(m.group(1)) * scale


def fit_to_cluster(params: dict[str, Any], facts: ClusterFacts) -> tuple[dict[str, Any], list[str]]:
    """Drop partitions and excluded nodes unknown to this cluster; returns (params, notes)."""
    params = dict(params)
    notes = []
    if params.get("partition"):
        wanted = [p for p in str(params["partition"]).split(",") if p]
        kept = [p for p in wanted if p in facts.partitions]
        if kept != wanted:
            notes.append(f"partitions {','.join(p for p in wanted if p not in kept)} are not on this cluster")
        if kept:
            params["partition"] = ",".join(kept)
        else:
            params.pop("partition")
            notes.append("using the cluster's default partition")
    if facts.max_cpus and int(params.get("cpus_per_task", 1)) > facts.max_cpus:
        notes.append(f"{params['cpus_per_task']} CPUs asked, the largest node has {facts.max_cpus}: using that")
        params["cpus_per_task"] = facts.max_cpus
    wanted_mb = _mem_mb(params.get("mem", ""))
    if facts.max_mem_mb and wanted_mb and wanted_mb > facts.max_mem_mb:
        notes.append(f"{params['mem']} asked, the largest node has {facts.max_mem_mb} MB: using that")
        params["mem"] = f"{facts.max_mem_mb}M"
    if params.get("exclude"):
        wanted = expand_hostlist(str(params["exclude"]))
        kept = [n for n in wanted if n in facts.nodes]
        if len(kept) != len(wanted):
            notes.append(f"{len(wanted) - len(kept)} excluded nodes are not on this cluster")
        if kept:
            params["exclude"] = ",".join(kept)
        else:
            params.pop("exclude")
    return params, notes


def expand_hostlist(text: str) -> list[str]:
    """SLURM host lists → node names: ``'a-[1-3,7],b'`` → ``['a-1', 'a-2', 'a-3', 'a-7', 'b']`` (one bracket
    group per name, numbers keep their zero padding)."""
    from mck.config import split_outside_brackets

    names: list[str] = []
    for part in (p.strip() for p in split_outside_brackets(text)):
        if not part:
            continue
        if "[" not in part:
            names.append(part)
            continue
        head, _, rest = part.partition("[")
        ranges, _, tail = rest.partition("]")
        for r in ranges.split(","):
            lo, dash, hi = r.partition("-")
            if not dash:
                names.append(f"{head}{lo}{tail}")
                continue
            width = len(lo)
            names.extend(f"{head}{n:0{width}d}{tail}" for n in range(int(lo), int(hi) + 1))
    return names


def chunks(items: Sequence[Any], size: int | None) -> Iterable[Sequence[Any]]:
    """Split an array that is larger than the cluster's MaxArraySize."""
    if not size or size <= 0:
        yield items
        return
    for start in range(0, len(items), size):
        yield items[start:start + size]
