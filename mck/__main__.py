"""``python -m mck``: the command line.

    python -m mck [OVERRIDES…] [-m]        run a step (Hydra app; -m sweeps, e.g. -m video='glob(*)')
    python -m mck pipeline [OVERRIDES…] [-m session=…]   every pending job of every step, in graph order
    python -m mck status [--json] [--timing [--session-frames N]] [OVERRIDES…]
    python -m mck rerun RUN_DIR [OVERRIDES…]
    python -m mck cancel step=STEP [video=…|session=…]
    python -m mck synth OUT [--tiny …]
    python -m mck demo [root=DIR]

Errors a user can fix print as one line, ``mck: error: <item>: <what> (<fix>)``; ``debug=true`` shows the
traceback.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

from mck.errors import ConfigError, MckError

SUBCOMMANDS = ("status", "rerun", "cancel", "synth", "demo", "pipeline")
_GLOB = re.compile(r"^glob\((.*)\)$")


def _debug(argv: list[str]) -> bool:
    return any(a in ("debug=true", "debug=True", "--debug") for a in argv)


def normalize_argv(argv: list[str]) -> list[str]:
    """Move ``-m/--multirun`` to the front: argparse rejects overrides after the flag when others came before."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    rest = [a for a in argv if a not in ("-m", "--multirun")]
    return flags[:1] + rest


def check_item_overrides(overrides: list[str], settings) -> None:
    """Fail early, with close matches, on an item name that does not exist or a glob that matches nothing."""
    from mck.inventory import ITEM_GROUPS, find_item, scan, unknown_item_error

    inventory = None
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or key not in ITEM_GROUPS or value in ("null", ""):
            continue
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        match = _GLOB.match(value)
        if match or "," in value:
            inventory = inventory or scan(settings)
            names = inventory.group(key)
            if match:
                warn_refused(inventory)
            patterns = [v.strip() for v in value.split(",")]
            if match:
                from mck.config import glob_matches

                if not glob_matches(names, match.group(1)):
                    from mck.inventory import empty_hint

                    raise ConfigError(f"no {key} matches {value!r} under {settings.data_root}", item=override,
                                      fix=(f"{len(names)} {key} items exist, e.g. {', '.join(sorted(names)[:3])}"
                                           if names else empty_hint(settings)))
            else:
                for name in patterns:
                    if name not in names:
                        raise unknown_item_error(key, name, names, settings)
        elif find_item(settings, key, value) is None:
            inventory = inventory or scan(settings)
            raise unknown_item_error(key, value, inventory.group(key), settings)


_WARNED: set[str] = set()


def warn_refused(inventory) -> None:
    """One warning line per folder with videos that discovery refused (a sweep leaves it out; never silently)."""
    from mck.inventory import refused_message

    for folder, problem in sorted(inventory.refused.items()):
        if folder not in _WARNED:
            _WARNED.add(folder)
            print(f"mck: warning: {refused_message(folder, problem)}", file=sys.stderr)


def check_step_override(overrides: list[str]) -> None:
    """``step=NAME`` must name a step file: else one line listing every step, with the closest first."""
    import difflib

    from mck.config import CONF_DIR

    steps = sorted(p.stem for p in (CONF_DIR / "step").glob("*.yaml"))
    for override in overrides:
        key, sep, value = override.partition("=")
        if key != "step" or not sep or value in steps or not steps:
            continue
        close = difflib.get_close_matches(value, steps, n=2, cutoff=0.6)
        raise ConfigError(f"no step named {value!r}" + (f"; did you mean {' or '.join(close)}?" if close else ""),
                          item=f"step={value}", fix=f"steps: {', '.join(steps)}")


def run_app(argv: list[str]) -> int:
    from mck.preparse import export_settings

    argv = normalize_argv(argv)
    overrides = [a for a in argv if not a.startswith("-")]
    check_step_override(overrides)
    if not any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        settings = export_settings(overrides)
        if os.path.isdir(settings.data_root):
            check_item_overrides(overrides, settings)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    from mck import app

    app.RESULTS.clear()
    sys.argv = [sys.argv[0]] + argv
    app.hydra_main()
    return _summarize(app.RESULTS, multirun=bool(argv and argv[0] in ("-m", "--multirun")))


def _summarize(results: list[dict], multirun: bool) -> int:
    failed = [r for r in results if r.get("state") == "failed"]
    if multirun and results:
        counts: dict[str, int] = {}
        for r in results:
            counts[r.get("state", "?")] = counts.get(r.get("state", "?"), 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        print(f"mck: {len(results)} items: {summary}")
        for r in failed:
            error, item = str(r.get("error")), str(r.get("item"))
            error = error[len(item) + 2:] if error.startswith(f"{item}: ") else error
            print(f"mck: failed: {r.get('step', '')} {item}: {error}", file=sys.stderr)
    return 1 if failed else 0


def _report(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, MckError):
        print(f"mck: error: {exc.one_line()}", file=sys.stderr)
        return 2
    message = _hydra_message(exc)
    print(f"mck: error: {message}", file=sys.stderr)
    return 2


def _hydra_message(exc: BaseException) -> str:
    """One line out of a Hydra/OmegaConf composition error (key and value named by them)."""
    parts = []
    seen = set()
    e: BaseException | None = exc
    while e is not None:
        text = str(e).strip()
        if text and text not in seen:
            seen.add(text)
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(
                ("full_key", "object_type", "reference_type", "Set the environment"))]
            if lines:
                parts.append(lines[0] if len(lines) == 1 else "; ".join(lines[:3]))
        e = e.__cause__ or e.__context__
    return " — ".join(parts[:2]) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug(argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            command, rest = argv[0], argv[1:]
            if command == "synth":
                from mck.synth.cli import main as synth_main

                return synth_main(rest)
            if command == "status":
                from mck.status import main as status_main

                return status_main(rest)
            if command == "rerun":
                from mck.rerun import main as rerun_main

                return rerun_main(rest)
            if command == "cancel":
                from mck.launch.cancel import main as cancel_main

                return cancel_main(rest)
            if command == "pipeline":
                from mck.pipeline import main as pipeline_main

                return pipeline_main(rest)
            if command == "demo":
                from mck.demo import main as demo_main

                return demo_main(rest)
        return run_app(argv)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("mck: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:  # noqa: BLE001 — the CLI's one place that turns errors into messages
        return _report(exc, debug)


if __name__ == "__main__":
    sys.exit(main())
