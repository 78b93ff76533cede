"""The declared pipeline: steps, what each reads (``inputs``, by producer step) and writes (``output_info``), and
the one function that says which producer items an item needs.

Every consumer gets its input paths from here — nobody else spells a producer's file name. A step's config declares

```yaml
inputs:                                   # parameter of the step function → where its value comes from
  keypoints_paths: {step: hrnet}          # a session step reading a video step: {camera: path}
  calibration_path: {step: calibration}   # the session's calibration
  weights_path: {step: train_hrnet, output: "hrnet_${video.view}.pth", path: "${project.weights.hrnet.${video.view}}"}
  gimbal_path: {step: gimbal, optional: true}
```

``output`` picks one of the producer's outputs (its ``output_name`` or one of ``also``, untagged); ``path`` names an
explicit file instead (the edge to ``step`` holds only when ``path`` *is* that producer output, so pre-trained weights
elsewhere need no training step); ``optional`` inputs order the graph but never block (the value is None when the
file is missing); ``items`` restricts a project-level consumer to some producer items (e.g. ``fit_sessions``).

Variants: ``variants: {hrnet: v2}`` tags hrnet's outputs (``keypoints.v2.h5``) and every step downstream of it
inherits the tag (``robust_triangulation.v2.npy``, ``gimbal.v2.npy``, ``qc.v2.json``), so a variant chain sits beside
the default one with its own status.

Shapes of a bound input by (consumer level, producer level):
same level → path · session ← video → {camera: path} · video|session ← calibration → path (the session's
calibration) · project ← video|session → {item: path} · project ← calibration → {session: path} (the calibration
each session uses) · calibration ← session → {session: path} · calibration ← video → {session: {camera: path}}
(the sessions that use this calibration) · any ← project → path.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from mck.config import CONF_DIR, LEVELS, StepConfig
from mck.errors import ConfigError

DEFAULT_TAG = ""


# ----------------------------------------------------------------------------------------------- names
def tagged(name: str, tags: Iterable[str]) -> str:
    """``keypoints.h5`` + (v2,) → ``keypoints.v2.h5``; ``nwb`` + (v2,) → ``v2.nwb``; no tags → unchanged."""
    tags = [t for t in tags if t]
    if not tags:
        return name
    head, sep, leaf = name.rpartition("/")
    stem, dot, ext = leaf.rpartition(".")
    leaf = f"{stem}.{'.'.join(tags)}.{ext}" if dot else f"{'.'.join(tags)}.{leaf}"
    return f"{head}{sep}{leaf}"


# ----------------------------------------------------------------------------------------------- step specs
def step_names() -> list[str]:
    """Every step with a config file (alphabetical; :func:`Graph.order` gives the pipeline order)."""
    return sorted(p.stem for p in (CONF_DIR / "step").glob("*.yaml"))


@functools.lru_cache(maxsize=64)
def _step_file(name: str) -> DictConfig:
    path = CONF_DIR / "step" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no step named {name!r}", fix=f"steps: {', '.join(step_names())}")
    try:
        return OmegaConf.merge(OmegaConf.structured(StepConfig), OmegaConf.load(path))
    except Exception as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}", fix="fix the step file") from exc


def _plain(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node


def _leaves(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[tuple, Any] = {}
        for k, v in tree.items():
            out.update(_leaves(v, prefix + (k,)))
        return out
    return {prefix: tree} if prefix else {}


def _set(tree: dict, key: tuple, value: Any) -> None:
    for k in key[:-1]:
        tree = tree.setdefault(k, {})
    tree[key[-1]] = value


def effective_step(name: str, root: DictConfig | dict | None, current: DictConfig | None = None) -> dict:
    """The step's config as a plain (unresolved) dict: its file with the experiment's ``steps.NAME`` overrides; for
    the step being run (``current``, as composed), the experiment's overrides apply only where the command line left
    the file's value alone (so what the user typed wins, deletions included)."""
    base = _plain(_step_file(name))
    extra = _plain((root or {}).get("steps", {}) or {}).get(name) or {}
    if current is None:
        if not extra:
            return base
        return OmegaConf.to_container(OmegaConf.merge(_step_file(name), extra), resolve=False)
    out = _plain(current)
    base_leaves, current_leaves = _leaves(base), _leaves(out)
    for key, value in _leaves(extra).items():
        if current_leaves.get(key, _ABSENT) == base_leaves.get(key, _ABSENT):
            _set(out, key, value)
    return out


_ABSENT = object()


def spec_root(root: DictConfig | dict | None, name: str, current: DictConfig | None = None) -> DictConfig:
    """A config ``{project, seed, variants, steps, step, video?, session?, calibration?}`` whose ``step`` is step
    ``name``'s effective config, so its interpolations resolve against the same project and item."""
    root = root if root is not None else {}
    node: dict[str, Any] = {"step": effective_step(name, root, current)}
    for key in ("project", "seed", "video", "session", "calibration"):
        value = root.get(key) if hasattr(root, "get") else None
        if value is not None:
            node[key] = _plain(value)
    return OmegaConf.create(node)


# ----------------------------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class InputSpec:
    """One declared input: the step function's parameter ``name`` gets ``step``'s output(s)."""

    name: str
    step: str
    output: str | None = None      # one of the producer's base output names; None = its primary output
    optional: bool = False
    path: str | None = None        # an explicit file instead of the producer's (unresolved interpolation allowed)
    items: Any = None              # project-level consumers: the producer items to read (None/empty = all)
    variant: str | None = None     # read this variant of the producer ("" = its default) instead of following tags


@dataclass
class StepNode:
    name: str
    level: str
    base_outputs: list[str]             # output_name + also, untagged
    inputs: dict[str, InputSpec]
    after: list[str]                    # step_dependencies: order-only edges (the lab's name)
    output_dir: Any = None              # project-level steps: where outputs go (None: output_root)
    tags: tuple[str, ...] = ()
    spec: dict = field(default_factory=dict)

    @property
    def outputs(self) -> list[str]:
        return [tagged(n, self.tags) for n in self.base_outputs]

    @property
    def output_name(self) -> str:
        return self.outputs[0]

    @property
    def producers(self) -> list[str]:
        seen: list[str] = []
        for dep in [*(i.step for i in self.inputs.values()), *self.after]:
            if dep not in seen:
                seen.append(dep)
        return seen

    def as_variant(self, variant: str | None) -> "StepNode":
        """This step as seen by an input that pins a variant (None: as the graph tags it; "": the default)."""
        if variant is None:
            return self
        from dataclasses import replace

        return replace(self, tags=(variant,) if variant else ())

    def output_for(self, base: str | None) -> str:
        """The tagged file name of one of this step's outputs (``base`` untagged; None = primary)."""
        if base is None:
            return self.output_name
        if base not in self.base_outputs:
            raise ConfigError(f"step {self.name} has no output {base!r}",
                              fix=f"its outputs: {', '.join(self.base_outputs)}")
        return tagged(base, self.tags)


def _node(name: str, spec: dict) -> StepNode:
    level = str((spec.get("pipeline_info") or {}).get("processing_level", "video"))
    if level not in LEVELS:
        raise ConfigError(f"step {name}: pipeline_info.processing_level={level!r} is not one of {', '.join(LEVELS)}",
                          fix=f"edit conf/step/{name}.yaml")
    info = spec.get("output_info") or {}
    inputs = {}
    for param, value in (spec.get("inputs") or {}).items():
        if not isinstance(value, dict) or "step" not in value:
            raise ConfigError(f"step {name}: inputs.{param} must be a mapping with a producer step, got {value!r}",
                              fix=f"e.g. inputs: {{{param}: {{step: hrnet}}}} in conf/step/{name}.yaml")
        unknown = set(value) - {"step", "output", "optional", "path", "items", "variant"}
        if unknown:
            raise ConfigError(f"step {name}: inputs.{param} has unknown key(s) {', '.join(sorted(unknown))}",
                              fix="valid: step, output, optional, path, items, variant")
        variant = value.get("variant")
        inputs[str(param)] = InputSpec(str(param), str(value["step"]), value.get("output"),
                                       bool(value.get("optional", False)), value.get("path"), value.get("items"),
                                       None if variant is None else str(variant))
    return StepNode(name, level, [str(info.get("output_name")), *[str(a) for a in info.get("also") or []]],
                    inputs, [str(d) for d in spec.get("step_dependencies") or []], info.get("output_dir"), (), spec)


@dataclass
class Graph:
    nodes: dict[str, StepNode]
    order: list[str]
    variants: dict[str, str]

    def node(self, name: str) -> StepNode:
        if name not in self.nodes:
            raise ConfigError(f"no step named {name!r}", fix=f"steps: {', '.join(self.order)}")
        return self.nodes[name]

    def consumers(self, name: str) -> list[str]:
        return [n for n in self.order if name in self.nodes[n].producers]

    def upstream(self, names: Iterable[str]) -> list[str]:
        """``names`` and every step they (transitively) read, in pipeline order."""
        wanted: set[str] = set()
        stack = list(names)
        while stack:
            n = stack.pop()
            if n not in wanted:
                wanted.add(n)
                stack.extend(self.node(n).producers)
        return [n for n in self.order if n in wanted]


def build_graph(root: DictConfig | dict | None = None, current: DictConfig | None = None,
                variants: dict[str, str] | None = None) -> Graph:
    """Every step of ``conf/step/`` with the experiment's ``steps`` overrides and the ``variants`` tags; ``current``
    is the composed ``step`` of the job being compiled (its command-line changes count)."""
    root = root if root is not None else {}
    current_name = str(current.name) if current is not None else None
    nodes = {}
    for name in step_names():
        spec = effective_step(name, root, current if name == current_name else None)
        nodes[name] = _node(name, spec)
    for node in nodes.values():
        for dep in node.producers:
            if dep not in nodes:
                raise ConfigError(f"step {node.name} reads from step {dep!r}, which does not exist",
                                  fix=f"steps: {', '.join(sorted(nodes))}")
    order = _topological(nodes)
    if variants is None:
        variants = {str(k): str(v) for k, v in (_plain(root.get("variants")) or {}).items()} if root else {}
    for step in variants:
        if step not in nodes:
            raise ConfigError(f"variants.{step}: no step named {step!r}", fix=f"steps: {', '.join(order)}")
    for name in order:
        node = nodes[name]
        tags: list[str] = []
        for producer in dict.fromkeys(i.step for i in node.inputs.values() if i.variant is None):
            tags.extend(t for t in nodes[producer].tags if t not in tags)
        own = variants.get(name)
        if own and own not in tags:
            tags.append(own)
        node.tags = tuple(tags)
    return Graph(nodes, order, dict(variants))


#: The order the lab runs its steps in; the graph's topological order breaks ties with it.
PREFERRED = ("probe", "calibration", "train_centernet", "train_hrnet", "centernet", "hrnet", "refine_calibration",
             "triangulation", "sync_check", "fit_gimbal", "gimbal", "qc", "export", "compression", "report")


def _topological(nodes: dict[str, StepNode]) -> list[str]:
    rank = {n: (PREFERRED.index(n) if n in PREFERRED else len(PREFERRED), n) for n in nodes}
    done: list[str] = []
    remaining = dict(nodes)
    while remaining:
        ready = [n for n, node in remaining.items() if all(p in done for p in node.producers)]
        if not ready:
            cycle = ", ".join(sorted(remaining))
            raise ConfigError(f"the step graph has a cycle among {cycle}", fix="check the steps' inputs")
        first = min(ready, key=rank.__getitem__)
        done.append(first)
        del remaining[first]
    return done


# ----------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class ItemRef:
    """A work item as the graph needs it: level, name, session, cameras, its calibration (None if unknown)."""

    level: str
    name: str
    session: str | None = None
    cameras: tuple[str, ...] = ()
    calibration: str | None = None
    output_dir: str = ""
    calibration_error: str | None = None   # why a session has no calibration (the inventory's words)


@dataclass(frozen=True)
class Need:
    """One producer item a consumer item needs: ``key`` places it in the bound value (() = the value itself)."""

    step: str
    item: str
    output_dir: str
    key: tuple[str, ...] = ()


class Items:
    """What :func:`needs` asks of the project's items (an :class:`mck.inventory.Inventory` underneath)."""

    def __init__(self, inventory: Any, project_name: str):
        self.inv = inventory
        self.project = project_name
        self._calib: dict[str, str | None] = {}

    def calibration_of(self, session: str) -> str | None:
        if session not in self._calib:
            self._calib[session] = self.inv.calibration_for(session)[0]
        return self._calib[session]

    def ref(self, level: str, name: str) -> ItemRef:
        if level == "project":
            return ItemRef("project", name)
        item = self.inv.group(level)[name]
        cal, error = (None, None) if level == "calibration" else self.inv.calibration_for(item.session)
        return ItemRef(level, name, item.session, tuple(item.videos), cal, item.output_dir, error)

    def names(self, level: str) -> list[str]:
        return [self.project] if level == "project" else sorted(self.inv.group(level))

    def output_dir(self, level: str, name: str) -> str:
        if level == "calibration":
            return os.path.join(self.inv.settings.output_root, name)
        if level == "video":
            return self.inv.videos[name].output_dir
        return self.inv.sessions[name].output_dir

    def sessions_of(self, calibration: str) -> list[str]:
        return [s for s in sorted(self.inv.sessions) if self.calibration_of(s) == calibration]


def needs(consumer_level: str, ref: ItemRef, producer: StepNode, items: Items, only: Any = None) -> list[Need]:
    """The producer items that item ``ref`` of a ``consumer_level`` step reads from ``producer`` — the one place
    that relates items across levels (compile, status, the pipeline and the report all call it).

    Raises ConfigError when the relation cannot hold (e.g. a session without a calibration)."""
    p = producer.level
    step = producer.name
    if p == "project":
        return [Need(step, items.project, "")]
    if consumer_level == "project":
        if p == "calibration":
            sessions = [s for s in items.names("session") if not only or s in only]
            out = []
            for s in sessions:
                cal = items.calibration_of(s)
                if cal:
                    out.append(Need(step, cal, items.output_dir("calibration", cal), (s,)))
            return out
        names = [n for n in items.names(p) if not only or n in only]
        return [Need(step, n, items.output_dir(p, n), (n,)) for n in names]
    if p == "calibration":
        if consumer_level == "calibration":
            return [Need(step, ref.name, ref.output_dir)]
        if not ref.calibration:
            if ref.calibration_error:
                raise ConfigError(ref.calibration_error, item=ref.session)
            raise ConfigError(f"no calibration for session {ref.session}", item=ref.session,
                              fix=f"add a calibration of its date or map one: "
                                  f"++project.calibration_map={{{ref.session}:CALIBRATION}}")
        return [Need(step, ref.calibration, items.output_dir("calibration", ref.calibration))]
    if consumer_level == "calibration":
        sessions = items.sessions_of(ref.name)
        if p == "session":
            return [Need(step, s, items.output_dir("session", s), (s,)) for s in sessions]
        out = []
        for s in sessions:
            for cam in items.inv.sessions[s].videos:
                out.append(Need(step, f"{s}.{cam}", items.output_dir("session", s), (s, cam)))
        return out
    if p == consumer_level:
        return [Need(step, ref.name, ref.output_dir)]
    if p == "video" and consumer_level == "session":
        return [Need(step, f"{ref.name}.{cam}", ref.output_dir, (cam,)) for cam in ref.cameras]
    if p == "session" and consumer_level == "video":
        return [Need(step, str(ref.session), ref.output_dir)]
    raise ConfigError(f"a {consumer_level}-level step cannot read the {p}-level step {step}")


def need_paths(producer: StepNode, need: Need, output_root: str, output: str | None = None,
               project_output_dir: str | None = None) -> list[str]:
    """Absolute paths of the producer outputs an item needs: ``output`` only (base name), else all its outputs."""
    from mck import layout

    names = [producer.output_for(output)] if output else producer.outputs
    directory = need.output_dir
    if producer.level == "project":
        directory = project_output_dir or output_root
    return layout.output_paths(producer.level, need.item, directory, names[0], names[1:])


def assemble(entries: list[tuple[tuple[str, ...], Any]]) -> Any:
    """[(key, value)] → the bound value: a single value for key (), else nested dicts by key."""
    if len(entries) == 1 and entries[0][0] == ():
        return entries[0][1]
    out: dict = {}
    for key, value in entries:
        _set(out, key, value)
    return out
