"""The Hydra application: ``task`` runs one job (one step on one item) inside Hydra's run dir.

Kept apart from ``__main__`` so that the task function pickles for SLURM (submitit).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import mck.config  # noqa: F401  (ConfigStore schema + resolvers)
from mck.config import CONF_DIR
from mck.runner import execute

log = logging.getLogger("mck")

#: Records of the jobs this process ran (the CLI turns failures into its exit status and prints a summary).
RESULTS: list[dict[str, Any]] = []


def task(cfg: DictConfig) -> dict[str, Any]:
    """Hydra task function: one step on one item. Returns (and remembers) the job record."""
    from mck.runtime import install_signal_handlers

    if "SLURM_JOB_ID" not in os.environ:  # under SLURM, submitit's own handlers checkpoint and requeue
        install_signal_handlers()
    try:
        run_dir = HydraConfig.get().runtime.output_dir
    except ValueError:
        run_dir = None
    record = execute(cfg, run_dir)
    RESULTS.append(record)
    state = record.get("state")
    if state == "failed":
        print(f"mck: error: {record.get('error')}", file=sys.stderr)
    elif cfg.get("dry_run") and HydraConfig.get().mode.name == "RUN":
        from mck.compile import compile_job, format_table

        print(format_table([compile_job(cfg)]))
    return record


def hydra_main() -> None:
    import hydra

    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)()
