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
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mck import layout, records
from mck.compile import project_output_dir, step_spec
from mck.errors import MckError
from mck.graph import Graph, Items, ItemRef, StepNode, build_graph, needs
from mck.inventory import Settings, scan
from mck.calibration_io import calibration_warnings
from mck.preparse import compose_root

STATES = ("done", "running", "failed", "pending", "blocked")


@dataclass
class StepStatus:
    step: str
    output_name: str
    level: str
    counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATES})
    failed: list[tuple[str, str]] = field(default_factory=list)
    running: list[tuple[str, str]] = field(default_factory=list)
    blocked: list[tuple[str, str]] = field(default_factory=list)
    items: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)
    findings: list[tuple[str, str]] = field(default_factory=list)   # (item, message): e.g. sync_check's

    @property
    def label(self) -> str:
        return self.step


def step_names(root: Any = None) -> list[str]:
    """Every step, in the pipeline order derived from the graph."""
    return build_graph(_as_root(root)).order


def _as_root(config: Any) -> Any:
    """A root config ({project, steps, variants}) from a root or a bare project node."""
    if config is None:
        return {}
    if hasattr(config, "get") and config.get("project") is not None:
        return config
    return OmegaConf.create({"project": config})


def recorded_variants(output_root: str) -> list[dict[str, str]]:
    """The variant selections jobs of this project have run with (``.mck/variants.json``)."""
    data = layout.read_json(layout.state_dir(output_root) / "variants.json")
    return [dict(v) for v in data] if isinstance(data, list) else []


class _Resolver:
    """Resolves an input's ``output``/``path``/``items`` fields per item kind (cached: they depend on the view
    at most)."""

    def __init__(self, root: Any, settings: Settings):
        self.project = root.project
        self.settings = settings
        self.cache: dict[tuple, dict] = {}

    def fields(self, node: StepNode, name: str, ref: ItemRef) -> dict:
        camera = ref.cameras[0] if ref.level == "video" and ref.cameras else None
        view = self.settings.view_of(camera) if camera else None
        key = (node.name, tuple(sorted(node.spec.get("inputs", {}).get(name, {}).items(), key=str)), view)
        if key not in self.cache:
            raw = dict(node.spec.get("inputs", {}).get(name, {}))
            scope = {"project": self.project, "x": raw,
                     "video": {"view": view or "", "camera": camera or "", "name": ref.name,
                               "session": ref.session or ""},
                     "session": {"name": ref.session or ref.name}, "calibration": {"name": ref.name}}
            try:
                self.cache[key] = OmegaConf.to_container(OmegaConf.create(scope).x, resolve=True)
            except Exception:
                self.cache[key] = {k: v for k, v in raw.items() if not isinstance(v, str) or "${" not in v}
        return self.cache[key]


def compute(root: Any, steps: list[str] | None = None) -> list[StepStatus]:
    """Per step and variant: the state of every item (done / running / failed / pending / blocked)."""
    root = _as_root(root)
    project = root.project
    settings = Settings.from_project(project)
    inv = scan(settings)
    items = Items(inv, str(project.name))
    resolver = _Resolver(root, settings)
    selections: list[dict[str, str]] = []
    base = {str(k): str(v) for k, v in (root.get("variants") or {}).items()}
    for chosen in [base, *recorded_variants(settings.output_root)]:
        if chosen not in selections:
            selections.append(chosen)
    states: dict[tuple[str, str], dict[str, str]] = {}
    errors: dict[tuple[str, str], dict[str, str]] = {}
    result: list[StepStatus] = []
    default_names = {n.name: n.output_name for n in build_graph(root, variants={}).nodes.values()}
    for chosen in selections:
        graph = build_graph(root, variants=chosen)
        for name in graph.order:
            node = graph.node(name)
            key = (name, node.output_name)
            if key in states:
                continue
            st = StepStatus(name, node.output_name, node.level,
                            variants=chosen if node.output_name != default_names[name] else {})
            states[key], errors[key] = st.items, {}
            pdir = project_output_dir(node, project) if node.level == "project" else ""
            for item in items.names(node.level):
                out_dir = pdir if node.level == "project" else items.output_dir(node.level, item)
                paths = layout.output_paths(node.level, item, out_dir, node.outputs[0], node.outputs[1:])
                if all(layout.output_exists(p) for p in paths):
                    state = "done"
                    st.findings.extend((item, m) for m in _findings(paths[0]))
                    if node.level == "calibration":      # failed calibration QC checks
                        st.findings.extend((item, f"calibration QC: {line}")
                                           for line in calibration_warnings(paths[0]))
                else:
                    state = _not_done(settings, st, item, node, graph, items, resolver, states, errors)
                st.counts[state] += 1
                st.items[item] = state
            if steps is None or name in steps:
                result.append(st)
    graph = build_graph(root, variants={})
    for name in graph.order:   # variants named by hand: step.output_info.output_name=…
        node = graph.node(name)
        for output_name in _recorded_output_names(settings.output_root, name):
            if (name, output_name) in states:
                continue
            legacy = replace(node, base_outputs=[output_name], tags=())
            st = StepStatus(name, output_name, node.level)
            states[(name, output_name)], errors[(name, output_name)] = st.items, {}
            pdir = project_output_dir(node, project) if node.level == "project" else ""
            for item in items.names(node.level):
                out_dir = pdir if node.level == "project" else items.output_dir(node.level, item)
                if layout.output_exists(layout.output_paths(node.level, item, out_dir, output_name)[0]):
                    state = "done"
                else:
                    state = _not_done(settings, st, item, legacy, graph, items, resolver, states, errors)
                st.counts[state] += 1
                st.items[item] = state
            if steps is None or name in steps:
                result.append(st)
    return result


def _findings(path: str) -> list[str]:
    """The messages a done output reports about its item (``{session}.sync.json``: the sync findings)."""
    if not path.endswith(".sync.json"):
        return []
    data = layout.read_json(path) or {}
    return [str(f.get("message")) for f in data.get("findings") or [] if f.get("message")]


def _recorded_output_names(output_root: str, step: str) -> list[str]:
    """Output names a step has job records for (``.mck/records/STEP/NAME/``)."""
    base = layout.state_dir(output_root) / "records" / step
    if not base.is_dir():
        return []
    return sorted(e.name.replace("__", os.sep) for e in os.scandir(base) if e.is_dir())


def _blocking(item: str, node: StepNode, graph: Graph, items: Items, resolver: _Resolver,
              states: dict, errors: dict) -> str | None:
    """Why ``item`` cannot run yet (a producer item not done), or None."""
    ref = items.ref(node.level, item)
    wanted: list[tuple[StepNode, Any]] = [(graph.node(n), None) for n in node.after]
    for name, spec in node.inputs.items():
        if spec.optional:
            continue
        fields = resolver.fields(node, name, ref)
        producer = graph.node(spec.step).as_variant(spec.variant)
        explicit = fields.get("path")
        if explicit is not None and producer.level == "project":
            pdir = project_output_dir(producer, resolver.project)
            base = producer.as_variant("").output_for(fields.get("output"))
            if os.path.abspath(str(explicit)) != os.path.join(pdir, base):
                continue   # an explicit file, not this producer's output
        wanted.append((producer, fields.get("items") or None))
    for producer, only in wanted:
        try:
            found = needs(node.level, ref, producer, items, only=only)
        except MckError as exc:
            return exc.what
        producer_states = states.get((producer.name, producer.output_name), {})
        for need in found:
            state = producer_states.get(need.item)
            if state != "done":
                why = errors.get((producer.name, producer.output_name), {}).get(need.item)
                return f"{producer.name} {need.item} " + (f"failed: {why}" if state == "failed" and why else
                                                          f"is {state or 'missing'}")
    return None


def _not_done(settings, st, item, node, graph, items, resolver, states, errors) -> str:
    record = records.read_record(settings.output_root, st.step, st.output_name, item) or {}
    owner = records.lock_owner(settings.output_root, st.step, st.output_name, item)
    state = record.get("state")
    if owner or (state == "submitted" and records.owner_alive(record)):
        live = owner or record
        st.running.append((item, str(live.get("slurm_job_id") or live.get("job_id"))))
        return "running"
    if state in ("failed", "running", "preempted"):
        error = record.get("error") or (f"job {record.get('job_id')} stopped without finishing"
                                        f" (killed or timed out); re-run to resume")
        st.failed.append((item, error))
        errors[(st.step, st.output_name)][item] = error
        return "failed"
    reason = _blocking(item, node, graph, items, resolver, states, errors)
    if reason:
        if state == "submitted" and record.get("after"):
            reason += f" (SLURM job {record.get('slurm_job_id')} was waiting on it with afterok and was cancelled)"
        st.blocked.append((item, reason))
        return "blocked"
    if state == "submitted":
        error = f"SLURM job {record.get('slurm_job_id')} left the queue without finishing; re-run to resume"
        st.failed.append((item, error))
        errors[(st.step, st.output_name)][item] = error
        return "failed"
    return "pending"


def format_text(statuses: list[StepStatus], show_items: int = 20) -> str:
    rows = [("step", "variant", "level", *STATES)]
    for st in statuses:
        rows.append((st.step, st.output_name, st.level, *(str(st.counts[s]) for s in STATES)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for st in statuses:
        for kind, entries, shown in (("failed ", st.failed, show_items), ("running", st.running, show_items),
                                     ("blocked", st.blocked, 2), ("check  ", st.findings, show_items)):
            for item, text in entries[:shown]:
                text = text[len(item) + 2:] if text.startswith(f"{item}: ") else text
                lines.append(f"{kind} {st.step} {item}: {text}")
            if len(entries) > shown:
                lines.append(f"{kind} {st.step}: … and {len(entries) - shown} more (--json lists all)")
    return "\n".join(lines)


def as_json(statuses: list[StepStatus]) -> list[dict[str, Any]]:
    return [{"step": s.step, "variant": s.output_name, "variants": s.variants, "level": s.level, "counts": s.counts,
             "failed": [{"item": i, "error": e} for i, e in s.failed],
             "running": [{"item": i, "job_id": j} for i, j in s.running],
             "blocked": [{"item": i, "reason": r} for i, r in s.blocked], "items": s.items,
             "findings": [{"item": i, "message": m} for i, m in s.findings]} for s in statuses]


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


@dataclass
class StepCost:
    """Predicted compute of one step: ``frames`` over its ``items`` (per item for ``--session-frames``),
    ``sec_per_frame`` from finished jobs (``source`` "measured (n jobs)") or the config ("configured");
    steps without frames (project/calibration training, reports) cost their measured median job time or
    ``min_minutes``."""

    step: str
    level: str
    items: int
    frames: int
    sec_per_frame: float
    source: str
    hours: float
    gpu: bool


def measured_sec_per_frame(output_root: str, step: str) -> tuple[list[float], list[float]]:
    """(seconds/frame, seconds) of every finished job of ``step`` with a frame count / elapsed time."""
    base = layout.state_dir(output_root) / "records" / step
    per_frame, seconds = [], []
    for path in base.glob("*/*.json"):
        rec = layout.read_json(path) or {}
        if rec.get("state") == "done" and rec.get("elapsed_s"):
            seconds.append(float(rec["elapsed_s"]))
            if rec.get("nframes"):
                per_frame.append(rec["elapsed_s"] / rec["nframes"])
    return per_frame, seconds


def predict_costs(root: Any, steps: list[str] | None = None, session_frames: int | None = None,
                  cameras: int | None = None) -> list[StepCost]:
    """Per step, predicted compute hours for the project's items (the sum over them), or with ``session_frames``
    for one hypothetical session of that many frames × ``cameras`` videos (default: the project's largest
    session, else 6)."""
    from mck.compile import count_frames_cached

    root = _as_root(root)
    project = root.project
    settings = Settings.from_project(project)
    inv = scan(settings)
    sessions = inv.group("session")
    if cameras is None:
        cameras = max((len(it.videos) for it in sessions.values()), default=0) or 6
    frames_of: dict[str, int] = {}

    def video_frames(item) -> int:
        if item.name not in frames_of:
            counts = [count_frames_cached(str(p), str(item.output_dir), f"{item.session}.{cam}")
                      for cam, p in item.videos.items()]
            frames_of[item.name] = max([c for c in counts if c] or [0])
        return frames_of[item.name]

    out = []
    graph = build_graph(root, variants={})
    for name in graph.order:
        if steps and name not in steps:
            continue
        node = graph.node(name)
        slurm = step_spec(name, project).slurm_params
        per_frame, seconds = measured_sec_per_frame(settings.output_root, name)
        if session_frames is not None:
            if node.level in ("project", "calibration"):
                continue
            count = cameras if node.level == "video" else 1
            frames = count * int(session_frames)
        else:
            group = inv.group(node.level) if node.level != "project" else {}
            count = len(group) if node.level != "project" else 1
            frames = sum(video_frames(it) for it in group.values())
        if per_frame:
            spf, source = statistics.median(per_frame), f"measured ({len(per_frame)} jobs)"
        else:
            spf, source = float(slurm.sec_per_frame), "configured"
        hours = frames * spf / 3600.0
        if not frames or spf == 0.0:
            if seconds:
                hours, source = count * statistics.median(seconds) / 3600.0, f"measured job time ({len(seconds)} jobs)"
            else:
                hours, source = count * float(slurm.min_minutes) / 60.0, "min_minutes"
        out.append(StepCost(name, node.level, count, frames, spf, source, hours, bool(slurm.gpu)))
    return out


def format_costs(costs: list[StepCost], sessions: int | None = None) -> str:
    rows = [("step", "level", "items", "frames", "s/frame", "source", "device", "hours")]
    for c in costs:
        rows.append((c.step, c.level, str(c.items), str(c.frames), f"{c.sec_per_frame:.4g}", c.source,
                     "gpu" if c.gpu else "cpu", f"{c.hours:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(col.ljust(w) for col, w in zip(r, widths)).rstrip() for r in rows]
    per_session = sum(c.hours for c in costs if c.level in ("video", "session"))
    other = sum(c.hours for c in costs if c.level not in ("video", "session"))
    if sessions is None:
        lines.append(f"total for one session: {per_session:.2f} compute hours "
                     f"(gpu steps {sum(c.hours for c in costs if c.gpu):.2f} h)")
    else:
        lines.append(f"total: {per_session:.2f} compute hours over {sessions} session(s)"
                     + (f" = {per_session / sessions:.2f} h per session" if sessions else "")
                     + f"; once per project/calibration: {other:.2f} h")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mck status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timing", action="store_true", help="measured seconds/frame vs configured, per step, and "
                        "the predicted compute hours of the project's items and per session")
    parser.add_argument("--session-frames", type=int, default=None,
                        help="with --timing: predict one session of this many frames (216000 = 2 h at 30 Hz)")
    parser.add_argument("overrides", nargs="*", help="experiment=… project=… project.KEY=… variants.STEP=TAG step=STEP")
    args = parser.parse_args(argv)
    from mck.__main__ import check_step_override

    check_step_override(args.overrides)
    steps = [o.split("=", 1)[1] for o in args.overrides if o.startswith("step=")]
    overrides = [o for o in args.overrides if not o.startswith("step=")]
    root = compose_root(overrides)
    if args.timing or args.session_frames:
        if args.session_frames is None:
            for step in steps or step_names(root):
                print(timing(root.project, step))
            print()
            settings = Settings.from_project(root.project)
            print(format_costs(predict_costs(root, steps or None), len(scan(settings).group("session"))))
        else:
            print(f"one session of {args.session_frames} frames:")
            print(format_costs(predict_costs(root, steps or None, session_frames=args.session_frames)))
        return 0
    statuses = compute(root, steps or None)
    if args.json:
        json.dump(as_json(statuses), sys.stdout, indent=1)
        print()
    else:
        print(format_text(statuses))
    _explain_items(Settings.from_project(root.project))
    return 0


def _explain_items(settings: Settings) -> None:
    """On stderr: the folders discovery refused, and a hint when the data root holds no items at all."""
    from mck.__main__ import warn_refused
    from mck.inventory import empty_hint

    inv = scan(settings)
    warn_refused(inv)
    if not (inv.videos or inv.sessions or inv.calibrations):
        print(f"mck: warning: {settings.data_root}: no videos, sessions or calibrations ({empty_hint(settings)})",
              file=sys.stderr)
