"""Compile: one composed config (step + item + project) → one Job: which item, which outputs, the paths of its
declared inputs (from :mod:`mck.graph`), what to do (run / skip because done / blocked by a dependency / running
elsewhere), its time limit and resources. Its arguments are bound to the step function here, so a misspelled or
mistyped parameter is refused before anything runs or is submitted.

Pure bookkeeping on the config and the file system; it never runs a step.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mck import graph as graph_mod
from mck import layout, records
from mck.config import LEVELS, StepConfig
from mck.errors import ConfigError, InputError, MckError
from mck.graph import Graph, Items, ItemRef, StepNode, build_graph, need_paths, needs
from mck.inventory import Inventory, Settings, find_item, item_node, match_calibration, unknown_item_error, scan

RUN, SKIP, BLOCKED, RUNNING = "run", "skip", "blocked", "running"


@dataclass
class Job:
    step: str
    output_name: str
    level: str
    item: str
    session: str | None
    outputs: list[str]
    action: str = RUN
    reason: str = ""
    time_min: int = 10
    nframes: int | None = None
    mem: str = "4GB"
    ncpus: int = 1
    gpu: bool = False
    output_root: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)      # function parameter → resolved path(s)
    needs: list[tuple[str, str, str]] = field(default_factory=list)   # (step, output_name, item) it reads
    after: list[str] = field(default_factory=list)            # SLURM job ids it must wait for (afterok)
    variants: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)         # recorded on the job's record (result still usable)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.step, self.output_name, self.item)

    @property
    def label(self) -> str:
        return f"mck.{self.step}.{self.item}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_GRAPHS: dict[str, Graph] = {}


def apply_experiment(cfg: DictConfig) -> None:
    """Merge the experiment's ``steps.<this step>`` overrides into ``cfg.step`` (what the command line changed in
    ``step`` wins), so the job, its snapshot and its binding all see the effective step config."""
    extra = (cfg.get("steps") or {}).get(str(cfg.step.name))
    if not extra:
        return
    effective = graph_mod.effective_step(str(cfg.step.name), cfg, cfg.step)
    _set_node(cfg, "step", OmegaConf.merge(OmegaConf.structured(StepConfig), effective))


def graph_for(cfg: DictConfig) -> Graph:
    """The step graph of this composition (experiment ``steps``, ``variants``, the current step's overrides)."""
    key = OmegaConf.to_yaml(OmegaConf.create({"steps": cfg.get("steps") or {}, "variants": cfg.get("variants") or {},
                                              "step": cfg.step}))
    if key not in _GRAPHS:
        if len(_GRAPHS) > 32:
            _GRAPHS.clear()
        _GRAPHS[key] = build_graph(cfg, current=cfg.step)
    return _GRAPHS[key]


def step_spec(name: str, project: DictConfig, root: DictConfig | None = None) -> DictConfig:
    """Step ``name``'s effective config (its file + the experiment's overrides in ``root``), interpolating against
    ``project``."""
    node = OmegaConf.create({"project": project, "seed": (root.get("seed") if root is not None else 0) or 0,
                             "step": graph_mod.effective_step(name, root)})
    return node.step


def level_of(step: DictConfig) -> str:
    level = str(step.pipeline_info.processing_level)
    if level not in LEVELS:
        raise ConfigError(f"step.pipeline_info.processing_level={level!r} is not one of {', '.join(LEVELS)}")
    return level


_OUTPUT_DIRS: dict[tuple[int, str], tuple[DictConfig, str]] = {}


def project_output_dir(node: StepNode, project: DictConfig) -> str:
    """Where a project-level step writes (its ``output_info.output_dir``, default ``project.output_root``)."""
    if node.output_dir is None:
        return str(project.output_root)
    key = (id(project), str(node.output_dir))
    cached = _OUTPUT_DIRS.get(key)
    if cached is None or cached[0] is not project:   # status asks once per item: resolve once per project
        resolved = OmegaConf.create({"project": project, "d": node.output_dir})
        cached = _OUTPUT_DIRS[key] = (project, str(resolved.d))
    return cached[1]


def ensure_item(cfg: DictConfig, settings: Settings) -> tuple[str, str | None, str]:
    """Make sure the config has the node of the item its step works on; returns (item, session, output_dir).

    A session-level step given ``video=S.cam`` works on session ``S`` (so a sweep over videos runs once per
    session); a calibration-level step given a session or video works on that session's calibration.
    """
    level = level_of(cfg.step)
    if level == "project":
        return str(cfg.project.name), None, ""
    if level == "video":
        if cfg.get("video") is None:
            raise ConfigError(f"step {cfg.step.name} works on videos: choose one with video=SESSION.CAMERA",
                              fix="or sweep: -m video='glob(*)'")
        return str(cfg.video.name), str(cfg.video.session), str(cfg.video.output_dir)
    if level == "session":
        if cfg.get("session") is None:
            if cfg.get("video") is None:
                raise ConfigError(f"step {cfg.step.name} works on sessions: choose one with session=NAME",
                                  fix="or sweep: -m session='glob(*)' (or video='glob(*)')")
            _set_node(cfg, "session", _node(settings, "session", str(cfg.video.session)))
        return str(cfg.session.name), str(cfg.session.name), str(cfg.session.output_dir)
    # calibration level
    if cfg.get("calibration") is None:
        source = cfg.get("session") or cfg.get("video")
        if source is None:
            raise ConfigError(f"step {cfg.step.name} works on calibration sessions: choose one with calibration=NAME",
                              fix="or sweep: -m calibration='glob(*)'")
        name, error = match_calibration(settings, str(source.session))
        if name is None:
            raise ConfigError(error, item=str(source.session))
        _set_node(cfg, "calibration", _node(settings, "calibration", name))
    return str(cfg.calibration.name), str(cfg.calibration.name), str(cfg.calibration.output_dir)


def _node(settings: Settings, kind: str, name: str) -> dict[str, Any]:
    item = find_item(settings, kind, name)
    if item is None:
        raise unknown_item_error(kind, name, scan(settings).group(kind), settings)
    calibration = match_calibration(settings, item.session) if kind != "calibration" else None
    return item_node(settings, item, calibration)


def _set_node(cfg: DictConfig, key: str, node: dict[str, Any]) -> None:
    was_readonly = OmegaConf.is_readonly(cfg)
    OmegaConf.set_readonly(cfg, False)
    with open_dict(cfg):
        cfg[key] = node
    OmegaConf.set_readonly(cfg, was_readonly)


def count_frames_cached(video_path: str, output_dir: str, video_name: str) -> int | None:
    """Frame count from the probe cache, else from the container header (no decoding), else None."""
    probe = layout.read_json(layout.probe_path(output_dir, video_name))
    if probe and isinstance(probe.get("frames"), int):
        return probe["frames"]
    try:
        from mck.video import video_info

        frames = video_info(video_path).frames
    except Exception:
        return None
    return frames if frames > 0 else None


def item_frames(cfg: DictConfig, level: str) -> int | None:
    if level == "video":
        return count_frames_cached(str(cfg.video.path), str(cfg.video.output_dir), str(cfg.video.name))
    if level in ("session", "calibration"):
        node = cfg.session if level == "session" else cfg.calibration
        counts = [count_frames_cached(str(p), str(node.output_dir), f"{node.name}.{cam}")
                  for cam, p in node.videos.items()]
        counts = [c for c in counts if c]
        return max(counts) if counts else None
    return None


def time_limit_min(slurm: DictConfig, nframes: int | None, time_scale: float) -> int:
    """``max(min_minutes, nframes × sec_per_frame / 60) × time_scale``, in whole minutes."""
    minutes = float(slurm.min_minutes)
    if nframes:
        minutes = max(minutes, nframes * float(slurm.sec_per_frame) / 60.0)
    return int(math.ceil(minutes * float(time_scale)))


_SCANS: dict[Settings, tuple[float, Inventory]] = {}


def cached_scan(settings: Settings, max_age_s: float = 10.0) -> Inventory:
    """The project's items, rescanned at most every ``max_age_s`` seconds (a sweep compiles many jobs at once)."""
    stamp, inv = _SCANS.get(settings, (0.0, None))
    if inv is None or time.monotonic() - stamp > max_age_s:
        inv = scan(settings)
        _SCANS[settings] = (time.monotonic(), inv)
    return inv


def item_ref(cfg: DictConfig, level: str, items: Items) -> ItemRef:
    """The job's item as the graph sees it (from the composed item node, no rescan)."""
    if level == "project":
        return ItemRef("project", str(cfg.project.name))
    if level == "video":
        node = cfg.video
        cal, error = items.inv.calibration_for(str(node.session))
        return ItemRef("video", str(node.name), str(node.session), (str(node.camera),), cal, str(node.output_dir),
                       error)
    node = cfg[level]
    cal = str(node.calibration) if level == "session" and node.get("calibration") else None
    error = str(node.calibration_error) if level == "session" and node.get("calibration_error") else None
    return ItemRef(level, str(node.name), str(node.name), tuple(str(c) for c in node.videos), cal,
                   str(node.output_dir), error)


#: What a job reads from one producer item: (step, output name, item, that item's output paths, optional).
Read = tuple[str, str, str, list[str], bool]


def resolve_inputs(cfg: DictConfig, graph: Graph, node: StepNode, ref: ItemRef, items: Items
                   ) -> tuple[dict[str, Any], list[Read]]:
    """The job's inputs, {parameter: path | nested dict of paths}, and every producer item it reads."""
    output_root = items.inv.settings.output_root
    values: dict[str, Any] = {}
    reads: list[Read] = []
    declared = cfg.step.get("inputs") or {}
    for name, spec in node.inputs.items():
        try:
            fields = OmegaConf.to_container(declared[name], resolve=True) if name in declared else {}
        except Exception as exc:
            raise ConfigError(f"step.inputs.{name}: {str(exc).splitlines()[0]}", item=ref.name,
                              fix=f"check inputs.{name} in conf/step/{node.name}.yaml") from exc
        variant = fields.get("variant", spec.variant)
        producer = graph.node(spec.step).as_variant(None if variant is None else str(variant))
        output = fields.get("output", spec.output)
        explicit = fields.get("path", spec.path)
        pdir = project_output_dir(producer, cfg.project) if producer.level == "project" else None
        entries, mine = [], []
        for need in needs(node.level, ref, producer, items, only=fields.get("items", spec.items) or None):
            paths = need_paths(producer, need, output_root, None, pdir)
            entries.append((need.key, need_paths(producer, need, output_root, output, pdir)[0] if output else paths[0]))
            mine.append((producer.name, producer.output_name, need.item, paths, spec.optional))
        if explicit is not None and not (len(entries) == 1 and os.path.abspath(str(explicit)) in (
                entries[0][1], _untagged(producer, mine[0], output))):
            # an explicit file (e.g. pre-trained weights elsewhere): no edge to the producer
            if not os.path.exists(str(explicit)) and not spec.optional:
                raise ConfigError(f"step.inputs.{name}: {explicit} does not exist", item=ref.name,
                                  fix=f"point it at an existing file, or run step={producer.name} to make one")
            values[name] = str(explicit)
            continue
        reads.extend(mine)
        if spec.optional:
            entries = [(k, p if layout.output_exists(p) else None) for k, p in entries]
            if any(k != () for k, _ in entries):
                entries = [(k, p) for k, p in entries if p is not None]
        if entries:
            values[name] = graph_mod.assemble(entries)
        else:
            values[name] = {} if (node.level in ("project", "calibration") or producer.level != node.level) else None
    for dep in node.after:
        producer = graph.node(dep)
        pdir = project_output_dir(producer, cfg.project) if producer.level == "project" else None
        for need in needs(node.level, ref, producer, items):
            reads.append((producer.name, producer.output_name, need.item,
                          need_paths(producer, need, output_root, None, pdir), False))
    return values, reads


def _untagged(producer: StepNode, read: Read, output: str | None) -> str:
    """The path the producer's output would have without variant tags (what a project file spells)."""
    tagged_name = producer.output_for(output)
    default_name = producer.as_variant("").output_for(output)
    path = read[3][producer.outputs.index(tagged_name)] if tagged_name in producer.outputs else read[3][0]
    return path[: len(path) - len(tagged_name)] + default_name if path.endswith(tagged_name) else path


def compile_job(cfg: DictConfig, *, check_running: bool = True, chain_queued: bool = False,
                validate: bool = True) -> Job:
    """Turn one composed config into a Job and decide its action.

    ``chain_queued``: a job whose missing inputs are all being made by queued SLURM jobs runs after them
    (``job.after`` holds their ids) instead of being blocked. ``validate``: bind the arguments to the step function
    now (a wrong key or type is a ConfigError naming item, key, value and fix), whatever the action."""
    settings = Settings.from_project(cfg.project)
    apply_experiment(cfg)
    graph = graph_for(cfg)
    node = graph.node(str(cfg.step.name))
    level = node.level
    for name in node.outputs:
        why = layout.unsafe_output_name(name)
        if why:
            raise ConfigError(f"output name {name!r} of step {node.name} is not a plain file name ({why})",
                              fix="set step.output_info.output_name, its also list and variant tags to names like "
                                  "keypoints.v2.h5")
    item, session, output_dir = ensure_item(cfg, settings)
    try:
        return _compile(cfg, settings, graph, node, level, item, session, output_dir, check_running, chain_queued,
                        validate)
    except MckError as exc:
        # a failure found while planning is the item's failure: name the item and say where to record it
        if exc.item is None:
            exc.item = item
        exc.record_key = (node.name, node.output_name, item, settings.output_root)
        raise


def _compile(cfg, settings, graph, node, level, item, session, output_dir, check_running, chain_queued, validate
             ) -> Job:
    if level == "project":
        output_dir = project_output_dir(node, cfg.project)
    outputs = layout.output_paths(level, item, output_dir, node.outputs[0], node.outputs[1:])
    slurm = cfg.step.slurm_params
    nframes = item_frames(cfg, level)
    job = Job(step=node.name, output_name=node.output_name, level=level, item=item,
              session=session, outputs=outputs, time_min=time_limit_min(slurm, nframes, cfg.time_scale),
              nframes=nframes, mem=str(slurm.mem), ncpus=int(slurm.ncpus), gpu=bool(slurm.gpu),
              output_root=settings.output_root, variants=dict(graph.variants))
    items = Items(cached_scan(settings), str(cfg.project.name))
    job.inputs, reads = resolve_inputs(cfg, graph, node, item_ref(cfg, level, items), items)
    job.needs = [(s, o, i) for s, o, i, _, _ in reads]
    if validate:
        from mck.binding import bind_arguments, import_step_function

        bind_arguments(import_step_function(cfg.step), cfg.step, job)
    _check_writable(os.path.dirname(outputs[0]), item)
    if level in ("session", "calibration"):
        job.warnings += check_cameras(cfg[level], cfg.project, level)
    if level == "session":
        check_session_frames(cfg.session)
    if not cfg.overwrite and all(layout.output_valid(p) for p in outputs):
        job.action, job.reason = SKIP, "done"
        return job
    if check_running:
        owner = records.lock_owner(job.output_root, job.step, job.output_name, item)
        if owner and owner.get("job_id") != records.job_identity()["job_id"]:
            job.action, job.reason = RUNNING, f"running as {owner.get('job_id')} on {owner.get('host')}"
            return job
    queued: dict[tuple[str, str, str], str] = {}
    missing = []
    for s, o, i, paths, optional in reads:
        if all(layout.output_exists(p) for p in paths):
            continue
        owner = records.lock_owner(job.output_root, s, o, i) if (chain_queued or not optional) else None
        if owner and owner.get("slurm_job_id"):
            queued[(s, o, i)] = str(owner["slurm_job_id"])   # optional inputs made in this submission: wait too
        if not optional:
            missing.append((s, o, i))
    if missing and not (chain_queued and all(k in queued for k in missing)):
        names = [f"{s} {i}" + (f" (queued as {queued[(s, o, i)]})" if (s, o, i) in queued else "")
                 for s, o, i in missing]
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        job.action, job.reason = BLOCKED, "waiting for " + ", ".join(names[:3]) + more
    elif queued and chain_queued:
        job.after = sorted(set(queued.values()))
        job.reason = f"after {len(job.after)} queued job(s)"
    return job


def check_cameras(node: DictConfig, project: DictConfig, level: str) -> list[str]:
    """Every configured camera must have a video in the session (or calibration). With
    ``project.allow_missing_cameras=true`` a missing one is a warning (returned, and recorded on the job)."""
    missing = [str(c) for c in project.cameras if str(c) not in node.videos]
    if not missing:
        return []
    found = ", ".join(str(c) for c in node.videos) or "none"
    what = (f"{level} has no video for camera{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(found {found})")
    if project.get("allow_missing_cameras"):
        return [f"made without camera{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(project.allow_missing_cameras=true)"]
    example = f"{node.name}.{missing[0]}.mp4"
    raise InputError(what, item=str(node.name),
                     fix=f"put {example} into {node.folder}, or set project.allow_missing_cameras=true to process "
                         f"it without {'them' if len(missing) > 1 else 'it'}")


def check_session_frames(session: DictConfig) -> None:
    """Cameras of a session must agree on frame count (from the probe caches) unless an alignment file explains
    the difference. Cameras not probed yet are not checked."""
    counts = {}
    for cam in session.videos:
        probe = layout.read_json(layout.probe_path(str(session.output_dir), f"{session.name}.{cam}"))
        if probe and isinstance(probe.get("frames"), int):
            counts[str(cam)] = probe["frames"]
    if session.get("alignment"):
        from mck.alignment import frame_table

        cameras = [str(c) for c in session.videos]
        table = frame_table(str(session.alignment), cameras)
        listed = {c: int((table[:, i] >= 0).sum()) for i, c in enumerate(cameras)}
        wrong = [f"{c} has {n} frames, the file lists {listed[c]}" for c, n in counts.items() if listed[c] != n]
        if wrong:
            raise InputError(f"{session.alignment}: {'; '.join(wrong)}", item=str(session.name),
                             fix="the alignment file must belong to these videos (or re-probe them: "
                                 "step=probe overwrite=true)")
        return
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{c} {n}" for c, n in counts.items())
        raise InputError(f"cameras disagree on frame count ({detail}) and there is no aligned_frame_numbers.csv",
                         item=str(session.name),
                         fix="add the acquisition's aligned_frame_numbers.csv to the session folder, or re-export "
                             "the videos")


def _check_writable(directory: str, item: str) -> None:
    """The output directory (or its nearest existing ancestor) must be a writable directory."""
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"output directory {directory} is not writable ({path} is "
                         f"{'not a directory' if not os.path.isdir(path) else 'read-only'})", item=item,
                         fix="set project.output_root=… to a writable place or fix the permissions")


def format_table(jobs: list[Job]) -> str:
    """The dry-run table: item, action, time limit, resources."""
    rows = [("step", "item", "action", "time", "mem", "cpus", "gpu", "frames", "note")]
    for j in jobs:
        rows.append((j.step, j.item, j.action, f"{j.time_min}m", j.mem, str(j.ncpus), "yes" if j.gpu else "no",
                     str(j.nframes or "?"), j.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + ("  " + r[-1] if r[-1] else "") for r in rows]
    return "\n".join(line.rstrip() for line in lines)
