"""Step ``report`` (project level): ``{output_root}/report/index.html`` — status per step and item, calibration
summary, per-session QC plots with links to the overlay videos, and timing (seconds/frame measured vs configured).

Reads only what exists: ``mck.status.compute``, the job records, every ``{session}.qc.json`` and camera_params.h5.
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path
from typing import Any

from mck import layout
from mck.io import atomic_path, load_json
from mck.report import ReportData, SessionQC, build_html, now


def _as_config(project: Any):
    from omegaconf import DictConfig, OmegaConf

    return project if isinstance(project, DictConfig) else OmegaConf.create(project)


def timing_rows(output_root: str, configured: dict[str, float]) -> list[dict]:
    """Per step: measured seconds/frame of finished jobs (records) vs the configured ``sec_per_frame``."""
    base = layout.state_dir(output_root) / "records"
    rows = []
    for step in configured:
        values = []
        step_dir = base / step
        if step_dir.is_dir():
            for variant in os.scandir(step_dir):
                if not variant.is_dir():
                    continue
                for entry in os.scandir(variant.path):
                    if not entry.name.endswith(".json"):
                        continue
                    rec = layout.read_json(entry.path) or {}
                    if rec.get("state") == "done" and rec.get("nframes") and rec.get("elapsed_s"):
                        values.append(rec["elapsed_s"] / rec["nframes"])
        row = {"step": step, "jobs": len(values), "configured": configured[step]}
        if values:
            values.sort()
            row.update(median=statistics.median(values), p95=values[min(len(values) - 1, int(0.95 * len(values)))],
                       max=values[-1])
        rows.append(row)
    return rows


def calibration_summary(name: str, path: str) -> dict:
    """Cameras, focal lengths and centres from a camera_params.h5 (+ residuals from the qc of any session)."""
    import numpy as np

    from mck.calibration_io import load_camera_params
    from mck.geometry.camera import rodrigues

    names, ext, intr = load_camera_params(path)
    R = rodrigues(ext[:, :3])
    centres = -np.einsum("cji,cj->ci", R, ext[:, 3:])
    from mck.calibration_io import calibration_warnings

    return {"name": name, "path": path, "cameras": names,
            "focal_px": {n: float(k[0][0, 0]) for n, k in zip(names, intr)},
            "centres": {n: c.tolist() for n, c in zip(names, centres)}, "residuals": None,
            "qc_warnings": calibration_warnings(path)}


def session_checks(output_root: str, session: str, output_dir: str) -> list[str]:
    """Lines for the session's section: the calibration and sync mode triangulation used (its job record), and
    the sync check's findings with their fixes."""
    from mck import records

    lines = []
    rec = records.read_record(output_root, "triangulation", "robust_triangulation.npy", session) or {}
    metrics = rec.get("metrics") or {}
    if metrics.get("calibration"):
        lines.append(f"triangulation used the {metrics['calibration']} calibration"
                     + (f" ({metrics['calibration_path']})" if metrics.get("calibration_path") else "")
                     + (f"; sync {metrics['sync']}" if metrics.get("sync") else ""))
    sync = layout.read_json(os.path.join(output_dir, f"{session}.sync.json"))
    if sync:
        found = [f.get("message") for f in sync.get("findings") or [] if f.get("message")]
        lines.extend(f"sync check: {m}" for m in found)
        if not found:
            lines.append("sync check: cameras in sync")
    return lines


#: QC figures the variant table compares: (column, path in qc.json); lower is better for each.
VARIANT_FIGURES = (("reprojection median px", ("reprojection", "overall", "median")),
                   ("2D jumps fraction", ("jumps", "jump_fraction")))


def _dig(data: Any, path: tuple) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _mean_of(value: Any) -> float | None:
    import numpy as np

    try:
        arr = np.asarray(value if not isinstance(value, dict) else list(value.values()), float)
    except (TypeError, ValueError):
        return None
    return float(np.nanmean(arr)) if arr.size and np.isfinite(arr).any() else None


def variant_rows(statuses: list[dict], sessions: dict[str, str]) -> list[dict]:
    """One row per QC variant (``qc.json``, ``qc.v2.json``, …): sessions with QC and the median over sessions of the
    QC figures, so variants can be compared side by side. ``sessions``: name → output dir."""
    rows = []
    for st in statuses:
        if st["step"] != "qc":
            continue
        found: dict[str, list[float]] = {}
        count = 0
        for name, out_dir in sessions.items():
            qc = layout.read_json(os.path.join(out_dir, f"{name}.{st['variant']}"))
            if not qc:
                continue
            count += 1
            for label, path in VARIANT_FIGURES:
                value = _mean_of(_dig(qc, path)) if not isinstance(_dig(qc, path), (int, float)) else _dig(qc, path)
                if value is not None:
                    found.setdefault(label, []).append(float(value))
            for source in ("triangulation", "gimbal"):
                value = _mean_of(_dig(qc, ("missing_fraction", f"3d_{source}")))
                if value is not None:
                    found.setdefault(f"3D missing fraction ({source})", []).append(value)
        label = ", ".join(f"{k}={v}" for k, v in (st.get("variants") or {}).items()) or "default"
        row = {"variant": f"{label} ({st['variant']})", "sessions": count}
        for label_, values in found.items():
            row[label_] = statistics.median(values)
        rows.append(row)
    keys = sorted({k for r in rows for k in r if k not in ("variant", "sessions")})
    return [{"variant": r["variant"], "sessions": r["sessions"], **{k: r.get(k) for k in keys}} for r in rows]


def collect(project, output_root: str, max_sessions_with_plots: int = 500, qc_paths: dict | None = None
            ) -> ReportData:
    """Everything the page shows, read from the project's files."""
    from mck.compile import step_spec
    from mck.inventory import Settings, scan
    from mck.status import as_json, compute, step_names

    statuses = as_json(compute(project))
    configured = {}
    for name in step_names(project):
        try:
            configured[name] = float(step_spec(name, project).slurm_params.sec_per_frame)
        except Exception:  # a step config without slurm params is shown without a configured value
            configured[name] = None
    timing = timing_rows(output_root, configured)
    inv = scan(Settings.from_project(project))
    calibrations = []
    for cname, citem in sorted(inv.calibrations.items()):
        path = os.path.join(output_root, cname, f"{cname}.camera_params.h5")
        if os.path.isfile(path):
            try:
                calibrations.append(calibration_summary(cname, path))
            except Exception as exc:  # shown in the page instead of failing the report
                calibrations.append({"name": cname, "path": path, "cameras": [], "focal_px": {}, "centres": {},
                                     "error": f"unreadable: {exc}"})
    for cal in calibrations:
        refined = layout.read_json(os.path.join(output_root, cal["name"], f"{cal['name']}.refine_calibration.json"))
        if refined:
            b, a = (refined.get("before") or {}).get("median_px"), (refined.get("after") or {}).get("median_px")
            cal["refined"] = (f"refined on the keypoints of {len(refined.get('sessions') or [])} session(s): median "
                              f"reprojection {b if b is None else round(b, 2)} → {a if a is None else round(a, 2)} "
                              f"px, {'accepted' if refined.get('accepted') else refined.get('reason') or 'not used'}")
    by_name = {c["name"]: c for c in calibrations}
    sessions = []
    for i, (sname, sitem) in enumerate(sorted(inv.sessions.items())):
        qc_path = (qc_paths or {}).get(sname) or os.path.join(sitem.output_dir, f"{sname}.qc.json")
        qc = None
        if i < max_sessions_with_plots and os.path.isfile(qc_path):
            try:
                qc = load_json(qc_path)
            except ValueError:
                qc = None
        if qc and qc.get("calibration") and qc["calibration"].get("residuals"):
            cal_path = qc["calibration"].get("path")
            for c in calibrations:
                if c["path"] == cal_path and c.get("residuals") is None:
                    c["residuals"] = qc["calibration"]["residuals"]
        sessions.append(SessionQC(sname, qc, os.path.join(sitem.output_dir, f"{sname}.qc"), None,
                                  session_checks(output_root, sname, sitem.output_dir)))
    del by_name
    variants = variant_rows(statuses, {n: it.output_dir for n, it in inv.sessions.items()})
    return ReportData(str(project.name), now(), statuses, timing, calibrations, sessions, variants)


def run(output_root: str, project: Any, output_path: str, qc_paths: dict | None = None, embed_images: Any = "auto",
        max_sessions_with_plots: int = 500, item: str = "", log: logging.Logger | None = None) -> dict:
    """Build the report. ``embed_images``: true (base64, one self-contained file), false (relative links), or
    "auto" (embedded up to 20 sessions with QC, linked beyond)."""
    project = _as_config(project)
    data = collect(project, output_root, max_sessions_with_plots, qc_paths)
    with_qc = sum(1 for s in data.sessions if s.qc)
    embed = (with_qc <= 20) if embed_images == "auto" else bool(embed_images)
    page = build_html(data, str(Path(output_path).parent), embed_images=embed)
    with atomic_path(output_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    if log:
        log.info("report: %d sessions (%d with QC) → %s", len(data.sessions), with_qc, output_path)
    return {"sessions": len(data.sessions), "sessions_with_qc": with_qc, "embedded_images": embed,
            "bytes": len(page.encode())}
