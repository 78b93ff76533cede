"""Work items found on disk: videos, sessions and calibration sessions, and the naming rules that tie them.

Layout (the lab's): ``DATA_ROOT/SESSION/SESSION.CAMERA.{mp4,avi}``. A session folder whose name matches
``calibration_pattern`` holds chessboard videos and is a *calibration*; every other folder with videos is a
*session*. A session uses the calibration whose name starts with the same date (the first 8 characters) unless
``calibration_map`` names one. Outputs go to ``OUTPUT_ROOT/SESSION/`` (by default the data root itself).

Items become config-group options (``video=20240422_J04301.top``, ``session=…``, ``calibration=…``) through the
``mckitems://`` config source in ``hydra_plugins/mck_plugins``; the same functions here build their config nodes.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, quote, unquote, urlencode

from mck.errors import ConfigError
from mck.layout import unsafe_name

ITEM_GROUPS = ("video", "session", "calibration")


@dataclass(frozen=True)
class Settings:
    """What the inventory needs from the project config (hashable, and serialisable into a config-source URL)."""

    data_root: str
    output_root: str
    cameras: tuple[str, ...] = ("top", "side1", "side2", "side3", "side4", "bottom")
    views: tuple[tuple[str, str], ...] = ()
    extensions: tuple[str, ...] = ("mp4", "avi")
    calibration_pattern: str = "*calib*"
    calibration_map: tuple[tuple[str, str], ...] = ()
    alignment_file: str = "aligned_frame_numbers.csv"

    @classmethod
    def from_project(cls, project: Any) -> "Settings":
        """Build from a (resolved) project config node or dict."""
        get = project.get if hasattr(project, "get") else lambda k, d=None: getattr(project, k, d)
        data_root = os.path.abspath(os.path.expanduser(str(get("data_root"))))
        output_root = os.path.abspath(os.path.expanduser(str(get("output_root") or data_root)))
        views = dict(get("views") or {})
        return cls(
            data_root=data_root,
            output_root=output_root,
            cameras=tuple(get("cameras")),
            views=tuple(sorted(views.items())),
            extensions=tuple(get("video_extensions") or ("mp4", "avi")),
            calibration_pattern=str(get("calibration_pattern") or "*calib*"),
            calibration_map=tuple(sorted(dict(get("calibration_map") or {}).items())),
            alignment_file=str(get("alignment_file") or "aligned_frame_numbers.csv"),
        )

    def to_url(self) -> str:
        """``mckitems:///abs/data/root?s=<json>`` — what the config source is built from (also on SLURM nodes)."""
        payload = json.dumps(asdict(self), separators=(",", ":"))
        return "mckitems://" + quote(self.data_root) + "?" + urlencode({"s": payload})

    @classmethod
    def from_url(cls, url: str) -> "Settings":
        query = url.split("?", 1)[1] if "?" in url else ""
        payload = json.loads(parse_qs(query)["s"][0])
        payload = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                   for k, v in payload.items()}
        return cls(**payload)

    def view_of(self, camera: str) -> str:
        views = dict(self.views)
        if camera in views:
            return views[camera]
        return "side" if camera.startswith("side") else camera

    def is_calibration(self, folder: str) -> bool:
        return fnmatch.fnmatchcase(folder, self.calibration_pattern)


@dataclass
class Item:
    """One work item. ``videos`` maps camera → path (one entry for a video item)."""

    kind: str
    name: str
    session: str
    folder: str
    output_dir: str
    videos: dict[str, str] = field(default_factory=dict)


@dataclass
class Inventory:
    settings: Settings
    videos: dict[str, Item]
    sessions: dict[str, Item]
    calibrations: dict[str, Item]
    refused: dict[str, str] = field(default_factory=dict)   # folder with videos → why it is not an item

    def group(self, kind: str) -> dict[str, Item]:
        return {"video": self.videos, "session": self.sessions, "calibration": self.calibrations}[kind]

    def calibration_for(self, session: str) -> tuple[str | None, str | None]:
        """(calibration name, None) or (None, error message) for a session."""
        return match_calibration(self.settings, session, self.calibrations)

    def node(self, kind: str, name: str) -> dict[str, Any]:
        """The config node of an item (what ``video=NAME`` etc. puts into the composed config)."""
        item = self.group(kind).get(name)
        if item is None:
            raise unknown_item_error(kind, name, self.group(kind), self.settings)
        return item_node(self.settings, item, self.calibration_for(item.session) if kind != "calibration" else None)


_PLAIN = re.compile(r"^[A-Za-z0-9_.+\-@%:]+$")


@functools.lru_cache(maxsize=4096)
def override_problem(name: str) -> str | None:
    """Why ``name`` cannot be written as an item on Hydra's command line (``video=NAME``, a ``glob(…)`` sweep), or
    None. Item names come from folder names; a ``(``, ``,``, ``[``, quote, ``${`` or the like would break every
    sweep over the group (Hydra's override grammar), so such folders are refused at discovery."""
    if _PLAIN.match(name):
        return None
    bad = sorted({c for c in name if not (c.isalnum() or c in "_.+-@%:")})
    shown = " ".join(repr(c) for c in bad) or repr(name)
    if "${" in name:
        return "it contains '${' (an interpolation in Hydra's override grammar)"
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        override = OverridesParser.create().parse_override(f"item={name}")
        value = override.value()
        if not override.is_sweep_override() and value is not None and str(value) == name:
            return None
    except Exception:  # noqa: BLE001 — any parse failure means the name cannot be used
        pass
    return f"it contains {shown}, which Hydra's override grammar cannot take"


def safe_name_for(name: str) -> str:
    """A suggestion for renaming: every character outside ``[A-Za-z0-9_.+-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.+\-]", "_", name)


def split_video_name(filename: str, extensions: Iterable[str]) -> tuple[str, str] | None:
    """``'S.top.mp4'`` → ``('S', 'top')`` if it has a video extension and a camera token, else None."""
    stem, dot, ext = filename.rpartition(".")
    if not dot or ext.lower() not in extensions:
        return None
    session, dot, camera = stem.rpartition(".")
    if not dot or not session or not camera:
        return None
    return session, camera


def _session_videos(settings: Settings, folder_path: str, folder: str) -> dict[str, str]:
    videos: dict[str, str] = {}
    try:
        entries = os.scandir(folder_path)
    except OSError:
        return videos
    with entries:
        for entry in entries:
            parts = split_video_name(entry.name, settings.extensions)
            if parts and parts[0] == folder and parts[1] in settings.cameras and entry.is_file():
                videos[parts[1]] = entry.path
    return {cam: videos[cam] for cam in settings.cameras if cam in videos}


def scan(settings: Settings) -> Inventory:
    """List every video, session and calibration under ``settings.data_root`` (one directory listing per folder)."""
    videos: dict[str, Item] = {}
    sessions: dict[str, Item] = {}
    calibrations: dict[str, Item] = {}
    refused: dict[str, str] = {}
    root = settings.data_root
    if not os.path.isdir(root):
        raise ConfigError(f"data root {root} does not exist",
                          fix="set project.data_root=… or create the data (python -m mck synth DIR for a demo)")
    with os.scandir(root) as folders:
        for folder in sorted(folders, key=lambda e: e.name):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            cams = _session_videos(settings, folder.path, folder.name)
            if not cams:
                continue
            problem = override_problem(folder.name)
            if problem:
                refused[folder.name] = problem
                continue
            out = os.path.join(settings.output_root, folder.name)
            if settings.is_calibration(folder.name):
                calibrations[folder.name] = Item("calibration", folder.name, folder.name, folder.path, out, cams)
                continue
            sessions[folder.name] = Item("session", folder.name, folder.name, folder.path, out, cams)
            for cam, path in cams.items():
                name = f"{folder.name}.{cam}"
                videos[name] = Item("video", name, folder.name, folder.path, out, {cam: path})
    return Inventory(settings, videos, sessions, calibrations, refused)


def find_item(settings: Settings, kind: str, name: str) -> Item | None:
    """Look up one item by name with a couple of ``stat`` calls (no directory scan). Names with a path separator
    or ``..`` are never items (they would point outside the data root)."""
    if unsafe_name(name) or override_problem(name):
        return None
    if kind == "video":
        session, dot, camera = name.rpartition(".")
        if not dot or camera not in settings.cameras or settings.is_calibration(session):
            return None
        for ext in settings.extensions:
            path = os.path.join(settings.data_root, session, f"{name}.{ext}")
            if os.path.isfile(path):
                return Item("video", name, session, os.path.dirname(path),
                            os.path.join(settings.output_root, session), {camera: path})
        return None
    folder = os.path.join(settings.data_root, name)
    if "/" in name or not os.path.isdir(folder) or (kind == "calibration") != settings.is_calibration(name):
        return None
    cams = _session_videos(settings, folder, name)
    if not cams:
        return None
    return Item(kind, name, name, folder, os.path.join(settings.output_root, name), cams)


def list_names(settings: Settings, kind: str) -> list[str]:
    return sorted(scan(settings).group(kind))


def match_calibration(settings: Settings, session: str, calibrations: dict[str, Item] | None = None
                      ) -> tuple[str | None, str | None]:
    """The calibration of ``session``: ``calibration_map`` entry, else the one calibration with the same date."""
    mapping = dict(settings.calibration_map)
    if calibrations is None:
        calibrations = scan(settings).calibrations
    if session in mapping:
        name = mapping[session]
        if name not in calibrations:
            return None, (f"project.calibration_map maps it to calibration {name!r}, which is not under "
                          f"{settings.data_root} (calibrations found: {', '.join(sorted(calibrations)) or 'none'})")
        return name, None
    date = session[:8]
    same_date = sorted(c for c in calibrations if c[:8] == date)
    if len(same_date) == 1:
        return same_date[0], None
    if not same_date:
        return None, (f"no calibration for date {date} under {settings.data_root} "
                      f"(add one, or map it: ++project.calibration_map={{{session}:CALIBRATION}})")
    return None, (f"ambiguous calibration for date {date}: {', '.join(same_date)} "
                  f"(choose one: ++project.calibration_map={{{session}:CALIBRATION}})")


def item_node(settings: Settings, item: Item, calibration: tuple[str | None, str | None] | None) -> dict[str, Any]:
    """The config node of an item. All paths absolute."""
    node: dict[str, Any] = {"name": item.name, "session": item.session, "folder": item.folder,
                            "output_dir": item.output_dir}
    if item.kind == "video":
        camera = next(iter(item.videos))
        node.update(camera=camera, view=settings.view_of(camera), path=item.videos[camera])
        return node
    node.update(date=item.name[:8], cameras=list(item.videos), videos=dict(item.videos))
    if item.kind == "session":
        calib, error = calibration if calibration is not None else (None, "not looked up")
        node.update(calibration=calib, calibration_error=error, alignment=_alignment(settings, item))
    return node


def _alignment(settings: Settings, item: Item) -> str | None:
    path = os.path.join(item.folder, settings.alignment_file)
    return path if os.path.isfile(path) else None


def refused_message(folder: str, problem: str) -> str:
    """The one-line reason a folder with videos is not an item."""
    return (f"{folder}: folder is not used: {problem} (rename the folder and its videos, e.g. to "
            f"{safe_name_for(folder)!r})")


def folder_problem(settings: Settings, kind: str, name: str) -> tuple[str, str] | None:
    """(what, fix) when a folder for the session/calibration (or the session of a video) named ``name`` exists but
    is not that item: its name cannot be an override, it has no videos, its videos use other camera names or another
    session prefix, or ``calibration_pattern`` puts it in the other group. None when there is no such folder."""
    folder_name = name.rpartition(".")[0] if kind == "video" else name
    if not folder_name or unsafe_name(folder_name):
        return None
    folder = os.path.join(settings.data_root, folder_name)
    if not os.path.isdir(folder):
        return None
    problem = override_problem(folder_name)
    if problem:
        return (f"folder {folder_name!r} is not used: {problem}",
                f"rename the folder and its videos, e.g. to {safe_name_for(folder_name)!r}")
    try:
        files = sorted(e.name for e in os.scandir(folder) if e.is_file())
    except OSError as exc:
        return f"folder {folder} cannot be read ({exc.strerror})", "check its permissions"
    parts = [split_video_name(f, settings.extensions) for f in files]
    videos = [(f, p) for f, p in zip(files, parts) if p]
    example = f"{folder_name}.{settings.cameras[0]}.{settings.extensions[0]}"
    if not videos:
        return (f"folder {folder} has no videos (extensions {', '.join(settings.extensions)})",
                f"videos are named SESSION.CAMERA.EXT, e.g. {example}")
    mine = [p[1] for _, p in videos if p[0] == folder_name]
    if not mine:
        return (f"its videos ({', '.join(f for f, _ in videos[:2])}…) do not start with the folder name",
                f"rename them SESSION.CAMERA.EXT, e.g. {example}")
    if not set(mine) & set(settings.cameras):
        return (f"its videos use cameras {', '.join(sorted(set(mine)))}, none of project.cameras "
                f"({', '.join(settings.cameras)})", "rename the videos, or set project.cameras to these names")
    pattern = settings.calibration_pattern
    if kind == "calibration" and not settings.is_calibration(folder_name):
        return f"it does not match calibration_pattern {pattern!r}, so it is a session", \
            "rename it or set project.calibration_pattern"
    if kind in ("session", "video") and settings.is_calibration(folder_name):
        return f"it matches calibration_pattern {pattern!r}, so it is a calibration", \
            "use calibration=… or set project.calibration_pattern"
    if kind == "video":
        camera = name.rpartition(".")[2]
        if camera not in settings.cameras:
            return (f"camera {camera!r} is not one of project.cameras ({', '.join(settings.cameras)})",
                    "choose one of: " + ", ".join(f"{folder_name}.{c}" for c in sorted(mine)))
        return (f"there is no {name}.{'/'.join(settings.extensions)} in {folder}",
                "choose one of: " + ", ".join(f"{folder_name}.{c}" for c in sorted(mine)))
    return None


def empty_hint(settings: Settings) -> str:
    """What a data root with no items should hold."""
    return (f"none found: a session is a folder SESSION holding videos SESSION.CAMERA.{settings.extensions[0]} for "
            f"cameras {', '.join(settings.cameras)}; set project.data_root=… or MCK_DATA_ROOT, or run "
            f"`python -m mck synth DIR` for a demo project")


def unknown_item_error(kind: str, name: str, existing: Iterable[str], settings: Settings) -> ConfigError:
    why = folder_problem(settings, kind, name)
    if why:
        return ConfigError(f"not a {kind}: {why[0]}", item=name, fix=why[1])
    existing = sorted(existing)
    close = difflib.get_close_matches(name, existing, n=5, cutoff=0.5)
    if close:
        hint = "did you mean: " + ", ".join(close)
    elif existing:
        hint = f"{len(existing)} exist, e.g. {', '.join(existing[:5])}"
    else:
        hint = empty_hint(settings)
    return ConfigError(f"no {kind} named {name!r} under {settings.data_root}", fix=hint)


def inventory_for_project(project: Any) -> Inventory:
    return scan(Settings.from_project(project))


def item_of_node(node: Any) -> tuple[str, str]:
    """(session, name) of an item node."""
    return str(node["session"]), str(node["name"])


def url_data_root(url: str) -> str:
    return unquote(url.split("://", 1)[1].split("?", 1)[0])
