"""The project report: one HTML page with the status table, calibration summary, per-session QC plots, links to
overlay videos and timing. ``build_html`` is a pure string builder over plain data; ``collect`` reads the project's
files (status, job records, ``{session}.qc.json``) into that data.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_COLORS = {"done": "#cfe8cf", "running": "#cfe0f5", "failed": "#f5c6c6", "pending": "#eeeeee",
                "blocked": "#f5e3b3"}


@dataclass
class SessionQC:
    """What the report shows for one session: its qc.json (or None) and where its files are."""

    name: str
    qc: dict | None
    qc_dir: str            # absolute folder of the PNGs/overlay
    calibration: str | None = None
    notes: list = field(default_factory=list)   # checks to show: calibration used, sync findings (issue 21)


@dataclass
class ReportData:
    project: str
    generated: str
    statuses: list[dict]                     # mck.status.as_json
    timing: list[dict]                       # {step, jobs, median, p95, max, configured}
    calibrations: list[dict]                 # {name, cameras, focal_px, centres, residuals, path}
    sessions: list[SessionQC] = field(default_factory=list)
    variants: list[dict] = field(default_factory=list)   # {variant, sessions, figure: value} per QC variant


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return _e(v)


CSS = """
body{font-family:system-ui,Arial,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#f3f3f3}
.state-done{background:#cfe8cf}.state-failed{background:#f5c6c6}.state-blocked{background:#f5e3b3}
.state-running{background:#cfe0f5}.state-pending{background:#eee}
.plots{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;max-width:48%}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:12px;font-style:italic;color:#555}
.missing{color:#a33}
nav a{margin-right:1em}
"""


def _image(src_path: str, rel_from: str, embed: bool) -> str:
    if embed:
        try:
            data = base64.b64encode(Path(src_path).read_bytes()).decode()
            return f"data:image/png;base64,{data}"
        except OSError:
            return ""
    return os.path.relpath(src_path, rel_from)


def build_html(data: ReportData, report_dir: str, embed_images: bool = True) -> str:
    """The whole page as a string. Image/video links are relative to ``report_dir`` (or images embedded)."""
    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>")
    w(f"<title>mck report: {_e(data.project)}</title><style>{CSS}</style></head><body>")
    w(f"<h1 id='title'>mck report: {_e(data.project)}</h1><p>generated {_e(data.generated)}</p>")
    w("<nav><a href='#status'>status</a><a href='#calibration'>calibration</a><a href='#timing'>timing</a>"
      "<a href='#sessions'>sessions</a></nav>")
    # status summary
    w("<h2 id='status'>Status per step</h2><table id='status-table'><tr><th>step</th><th>variant</th><th>level</th>")
    states = list(STATE_COLORS)
    w("".join(f"<th>{s}</th>" for s in states) + "</tr>")
    for st in data.statuses:
        w(f"<tr data-step='{_e(st['step'])}'><td>{_e(st['step'])}</td><td>{_e(st['variant'])}</td>"
          f"<td>{_e(st['level'])}</td>")
        for s in states:
            n = st["counts"].get(s, 0)
            w(f"<td class='{'state-' + s if n else ''}'>{n}</td>")
        w("</tr>")
    w("</table>")
    failed = [(st["step"], f["item"], f["error"]) for st in data.statuses for f in st.get("failed", [])]
    if failed:
        w(f"<h3>Failed items ({len(failed)})</h3><table id='failed-table'><tr><th>step</th><th>item</th>"
          "<th>error</th></tr>")
        for step, item, error in failed:
            w(f"<tr class='state-failed'><td>{_e(step)}</td><td>{_e(item)}</td><td>{_e(error)}</td></tr>")
        w("</table>")
    # per item matrix, one per level
    by_level: dict[str, list[dict]] = {}
    for st in data.statuses:
        by_level.setdefault(st["level"], []).append(st)
    for level, sts in by_level.items():
        items = sorted({i for st in sts for i in st.get("items", {})})
        if not items:
            continue
        w(f"<details{' open' if len(items) <= 50 else ''}><summary>{_e(level)} items ({len(items)})</summary>")
        w(f"<table class='items' data-level='{_e(level)}'><tr><th>{_e(level)}</th>"
          + "".join(f"<th>{_e(st['step'])}{'' if st['variant'] == st.get('default_variant', st['variant']) else ''}"
                    f"<br><small>{_e(st['variant'])}</small></th>" for st in sts) + "</tr>")
        for item in items:
            cells = []
            for st in sts:
                s = st.get("items", {}).get(item, "")
                cells.append(f"<td class='state-{_e(s)}'>{_e(s)}</td>")
            w(f"<tr><td>{_e(item)}</td>{''.join(cells)}</tr>")
        w("</table></details>")
    # calibration
    w("<h2 id='calibration'>Calibration</h2>")
    if not data.calibrations:
        w("<p class='missing'>no calibration files yet (run step=calibration)</p>")
    for cal in data.calibrations:
        w(f"<h3>{_e(cal['name'])}</h3><table class='calibration'><tr><th>camera</th><th>focal (px)</th>"
          "<th>centre x, y, z (mm)</th><th>residual</th></tr>")
        for cam in cal["cameras"]:
            centre = ", ".join(f"{v:.0f}" for v in cal["centres"][cam])
            res = (cal.get("residuals") or {}).get(cam)
            w(f"<tr><td>{_e(cam)}</td><td>{_fmt(cal['focal_px'][cam], 5)}</td><td>{centre}</td>"
              f"<td>{_fmt(res)}</td></tr>")
        w("</table>")
        for line in cal.get("qc_warnings") or []:                 # failed calibration QC checks (with fixes)
            w(f"<p class='missing calibration-qc'>calibration QC: {_e(line)}</p>")
        if cal.get("error"):
            w(f"<p class='missing'>{_e(cal['error'])}</p>")
        if cal.get("refined"):
            w(f"<p class='refined'>{_e(cal['refined'])}</p>")
    # variants side by side
    if len(data.variants) > 1:
        keys = [k for k in data.variants[0] if k not in ("variant", "sessions")]
        w("<h2 id='variants'>Variants compared (QC, median over sessions)</h2><table id='variants-table'><tr>"
          "<th>variant</th><th>sessions with QC</th>" + "".join(f"<th>{_e(k)}</th>" for k in keys) + "</tr>")
        for v in data.variants:
            w(f"<tr><td>{_e(v['variant'])}</td><td>{v['sessions']}</td>"
              + "".join(f"<td>{_fmt(v.get(k))}</td>" for k in keys) + "</tr>")
        w("</table>")
    # timing
    w("<h2 id='timing'>Timing: seconds per frame, measured vs configured</h2><table id='timing-table'><tr><th>step"
      "</th><th>finished jobs</th><th>median s/frame</th><th>p95</th><th>max</th><th>configured sec_per_frame</th>"
      "<th>max / configured</th></tr>")
    for t in data.timing:
        ratio = (t["max"] / t["configured"]) if (t.get("max") and t.get("configured")) else None
        cls = " class='state-failed'" if ratio and ratio > 1 else ""
        w(f"<tr{cls}><td>{_e(t['step'])}</td><td>{t['jobs']}</td><td>{_fmt(t.get('median'))}</td>"
          f"<td>{_fmt(t.get('p95'))}</td><td>{_fmt(t.get('max'))}</td><td>{_fmt(t.get('configured'))}</td>"
          f"<td>{_fmt(ratio)}</td></tr>")
    w("</table>")
    # sessions
    w(f"<h2 id='sessions'>Sessions ({len(data.sessions)})</h2>")
    for s in data.sessions:
        w(f"<section class='session' id='session-{_e(s.name)}'><h3>{_e(s.name)}</h3>")
        if s.notes:
            w("<ul class='checks'>" + "".join(f"<li>{_e(n)}</li>" for n in s.notes) + "</ul>")
        if s.qc is None:
            w("<p class='missing'>no QC yet (run step=qc)</p></section>")
            continue
        miss = s.qc.get("missing_inputs") or {}
        if miss:
            w("<ul class='missing'>" + "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in miss.items()) + "</ul>")
        rep = (s.qc.get("reprojection") or {}).get("overall") or {}
        if rep:
            w(f"<p>reprojection error median {_fmt(rep.get('median'))} px, p95 {_fmt(rep.get('p95'))} px</p>")
        ov = s.qc.get("overlay") or {}
        if ov.get("written"):
            href = os.path.relpath(os.path.join(os.path.dirname(s.qc_dir), ov["path"]), report_dir)
            w(f"<p><a class='overlay' href='{_e(href)}'>overlay video</a> ({ov.get('frames')} frames from "
              f"{ov.get('start')}, skeleton: {_e(ov.get('skeleton'))})</p>")
        w("<div class='plots'>")
        for name, p in (s.qc.get("plots") or {}).items():
            src = _image(os.path.join(os.path.dirname(s.qc_dir), p["png"]), report_dir, embed_images)
            w(f"<figure><img alt='{_e(s.name)} {_e(name)}' src='{_e(src)}' loading='lazy'>"
              f"<figcaption>{_e(p.get('caption', ''))}</figcaption></figure>")
        w("</div></section>")
    w("</body></html>")
    return "\n".join(out)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
