"""``python -m mck status``: per step (and variant), how many items are done / running / failed / pending /
blocked, the failed items with their one-line errors, and (``--timing``) measured seconds per frame.

Fast on big projects: one directory scan for the items, one ``stat`` per (step, item) output, and job records are
read only for items that are not done.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mck import layout, records
from mck.compile import level_of, project_output_dir, step_spec, step_outputs
from mck.config import CONF_DIR
from mck.inventory import Inventory, Settings, match_calibration, scan
from mck.preparse import project_config

STATES = ("done", "running", "failed", "pending", "blocked")


@dataclass
class StepStatus:
    step: str
    output_name: str
    level: str
    counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATES})
    failed: list[tuple[str, str]] = field(default_factory=list)
    running: list[tuple[str, str]] = field(default_factory=list)
    items: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.step


def _items(inv: Inventory, level: str, project: DictConfig) -> dict[str, str]:
    """item name → output dir."""
    if level == "project":
        return {str(project.name): ""}
    return {name: it.output_dir for name, it in inv.group(level).items()}


def _variants(output_root: str, step: str, default: str) -> list[str]:
    """Output names of a step's variants that have job records, the default first."""
    found = [default]
    base = layout.state_dir(output_root) / "records" / step
    if base.is_dir():
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            name = entry.name.replace("__", os.sep)
            if entry.is_dir() and name not in found:
                found.append(name)
    return found


def step_names() -> list[str]:
    order = ["probe", "calibration", "train_centernet", "train_hrnet", "centernet", "hrnet", "triangulation",
             "fit_gimbal", "gimbal", "qc", "export", "compression", "report"]
    names = sorted(p.stem for p in (CONF_DIR / "step").glob("*.yaml"))
    return [n for n in order if n in names] + [n for n in names if n not in order]


def compute(project: DictConfig, steps: list[str] | None = None) -> list[StepStatus]:
    settings = Settings.from_project(project)
    inv = scan(settings)
    specs = {name: step_spec(name, project) for name in step_names()}
    done_sets: dict[tuple[str, str], set[str]] = {}

    def done_items(name: str, output_name: str) -> set[str]:
        key = (name, output_name)
        if key not in done_sets:
            spec = specs[name]
            level = level_of(spec)
            also = list(spec.output_info.also) if output_name == spec.output_info.output_name else []
            done = set()
            for item, out_dir in _items(inv, level, project).items():
                if level == "project":
                    out_dir = project_output_dir(spec, project)
                paths = layout.output_paths(level, item, out_dir, output_name, also)
                if all(layout.output_exists(p) for p in paths):
                    done.add(item)
            done_sets[key] = done
        return done_sets[key]

    calib_of = {s: match_calibration(settings, s, inv.calibrations)[0] for s in inv.sessions}
    levels = {name: level_of(spec) for name, spec in specs.items()}
    result = []
    for name in steps or list(specs):
        spec = specs[name]
        level = levels[name]
        deps = [(str(d), levels[str(d)], str(specs[str(d)].output_info.output_name)) for d in spec.step_dependencies]
        for output_name in _variants(settings.output_root, name, str(spec.output_info.output_name)):
            st = StepStatus(name, output_name, level)
            done = done_items(name, output_name)
            for item in _items(inv, level, project):
                if item in done:
                    state = "done"
                else:
                    state = _not_done_state(settings, st, item, deps, level, inv, project, done_items, calib_of)
                st.counts[state] += 1
                st.items[item] = state
            result.append(st)
    return result


def _not_done_state(settings, st, item, deps, level, inv, project, done_items, calib_of) -> str:
    record = records.read_record(settings.output_root, st.step, st.output_name, item)
    owner = records.lock_owner(settings.output_root, st.step, st.output_name, item)
    if owner:
        st.running.append((item, str(owner.get("job_id"))))
        return "running"
    if record and record.get("state") == "submitted":
        alive = records.owner_alive(record)
        if alive:
            st.running.append((item, str(record.get("slurm_job_id") or record.get("job_id"))))
            return "running"
    if record and record.get("state") in ("failed", "running", "preempted", "submitted"):
        error = record.get("error") or (f"job {record.get('job_id')} stopped without finishing"
                                        f" (killed or timed out); re-run to resume")
        st.failed.append((item, error))
        return "failed"
    for dep, dep_level, dep_output in deps:
        needed = _dependency_items(item, level, dep_level, inv, project, calib_of)
        if needed is None or not needed <= done_items(dep, dep_output):
            return "blocked"
    return "pending"


def _dependency_items(item, level, dep_level, inv, project, calib_of) -> set[str] | None:
    if dep_level == "project":
        return {str(project.name)}
    if level == "project":
        return set(inv.group(dep_level))
    if dep_level == level:
        return {item}
    session = item if level in ("session", "calibration") else inv.videos[item].session
    if dep_level == "calibration":
        calib = calib_of.get(session)
        return {calib} if calib else None
    if dep_level == "video" and level == "session":
        return {f"{session}.{cam}" for cam in inv.sessions[session].videos}
    if dep_level == "session":
        return {session}
    return None


def format_text(statuses: list[StepStatus], show_items: int = 20) -> str:
    rows = [("step", "variant", "level", *STATES)]
    for st in statuses:
        rows.append((st.step, st.output_name, st.level, *(str(st.counts[s]) for s in STATES)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for st in statuses:
        for item, error in st.failed[:show_items]:
            lines.append(f"failed  {st.step} {item}: {error}")
        if len(st.failed) > show_items:
            lines.append(f"failed  {st.step}: … and {len(st.failed) - show_items} more (--json lists all)")
        for item, job_id in st.running[:show_items]:
            lines.append(f"running {st.step} {item}: {job_id}")
    return "\n".join(lines)


def as_json(statuses: list[StepStatus]) -> list[dict[str, Any]]:
    return [{"step": s.step, "variant": s.output_name, "level": s.level, "counts": s.counts,
             "failed": [{"item": i, "error": e} for i, e in s.failed],
             "running": [{"item": i, "job_id": j} for i, j in s.running], "items": s.items} for s in statuses]


def timing(project: DictConfig, step: str) -> str:
    """Measured seconds/frame of a step's finished jobs against the configured ``sec_per_frame``."""
    spec = step_spec(step, project)
    settings = Settings.from_project(project)
    base = layout.state_dir(settings.output_root) / "records" / step
    values = []
    for path in base.glob("*/*.json"):
        rec = layout.read_json(path) or {}
        if rec.get("state") == "done" and rec.get("nframes") and rec.get("elapsed_s"):
            values.append(rec["elapsed_s"] / rec["nframes"])
    configured = float(spec.slurm_params.sec_per_frame)
    if not values:
        return f"{step}: no finished jobs with frame counts yet (configured sec_per_frame={configured})"
    q = statistics.quantiles(values, n=20) if len(values) > 1 else [values[0]] * 19
    return (f"{step}: {len(values)} jobs, seconds/frame median {statistics.median(values):.4g}, "
            f"p5 {q[0]:.4g}, p95 {q[-1]:.4g}, max {max(values):.4g} (configured sec_per_frame={configured})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mck status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timing", action="store_true", help="measured seconds/frame vs configured, per step")
    parser.add_argument("overrides", nargs="*", help="project=… project.KEY=… step=STEP")
    args = parser.parse_args(argv)
    steps = [o.split("=", 1)[1] for o in args.overrides if o.startswith("step=")]
    overrides = [o for o in args.overrides if not o.startswith("step=")]
    project = project_config(overrides)
    if args.timing:
        for step in steps or step_names():
            print(timing(project, step))
        return 0
    statuses = compute(project, steps or None)
    if args.json:
        json.dump(as_json(statuses), sys.stdout, indent=1)
        print()
    else:
        print(format_text(statuses))
    return 0
