"""QC figures. Each function takes arrays (see ``mck.qc``) and returns a ``matplotlib.figure.Figure`` with a title,
axis units and a one-line caption saying what good looks like. Figures are built without pyplot (Agg canvas), so
this works headless and in threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mck.qc import metrics

#: What good looks like, per plot name (also shown in the HTML report).
CAPTIONS = {
    "confidence": "Good: boxes high (> 0.5) for every keypoint in every camera; a low camera/keypoint is occluded "
                  "or mis-detected there.",
    "jumps": "Good: p99 frame-to-frame displacement of a few px to tens of px; large values or many jumps mean "
             "identity swaps or detections hopping between body parts.",
    "reprojection": "Good: most errors below ~5 px in every camera; one camera much worse points at its "
                    "calibration or a shifted camera.",
    "bone_lengths": "Good: narrow distributions that stay flat over time; GIMBAL narrower than triangulation.",
    "missing": "Good: near 0 everywhere; a keypoint missing in most frames of a camera is never detected there.",
    "calibration": "Good: median residual below ~1 px (mm on the board) in every camera; cameras where the rig "
                   "puts them.",
}


def _figure(title: str, caption: str, size=(10, 5), ncols: int = 1, nrows: int = 1):
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.suptitle(title)
    fig.text(0.5, 0.0, caption, ha="center", va="bottom", fontsize=8, style="italic", wrap=True)
    fig.get_layout_engine().set(h_pad=0.3)
    return fig, axes


def placeholder(title: str, message: str) -> Figure:
    """A figure that says what is missing instead of a plot (a session missing an input still gets its QC page)."""
    fig, axes = _figure(title, "This plot needs the input named above; run the step that writes it.", (8, 3))
    ax = axes[0, 0]
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True, color="#a33")
    return fig


def confidence(conf: np.ndarray, cameras: Sequence[str], names: Sequence[str]) -> Figure:
    """Per camera × keypoint HRNet confidence distributions; ``conf`` ``(frames, cameras, keypoints)``."""
    conf = np.asarray(conf, float)
    n = len(cameras)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _figure("HRNet confidence per camera and keypoint", CAPTIONS["confidence"], (4.2 * ncols, 3.2 * nrows),
                        ncols, nrows)
    for c in range(nrows * ncols):
        ax = axes.flat[c]
        if c >= n:
            ax.axis("off")
            continue
        data = [v[np.isfinite(v)] for v in conf[:, c].T]
        data = [d if d.size else np.array([np.nan]) for d in data]
        ax.boxplot(data, showfliers=False, widths=0.6)
        ax.set_title(cameras[c], fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("confidence (0–1)")
        ax.set_xticks(range(1, len(names) + 1), names, rotation=90, fontsize=6)
    return fig


def _heatmap(ax, values: np.ndarray, rows: Sequence[str], cols: Sequence[str], label: str, fmt: str = "{:.2g}",
             cmap: str = "viridis", vmin=None, vmax=None) -> None:
    values = np.asarray(values, float)
    im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.figure.colorbar(im, ax=ax, label=label)
    if values.size <= 120:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, "–" if not np.isfinite(v) else fmt.format(v), ha="center", va="center", fontsize=6,
                    color="w")


def jumps(uv: np.ndarray, cameras: Sequence[str], names: Sequence[str], jump_px: float = 50.0) -> Figure:
    """2D frame-to-frame displacement: p99 per camera × keypoint (px) and the fraction of jumps > ``jump_px``."""
    s = metrics.jump_summary(uv, jump_px)
    fig, axes = _figure("2D frame-to-frame displacement (jumps)", CAPTIONS["jumps"], (12, 4.5), ncols=2)
    _heatmap(axes[0, 0], s["p99_px"], cameras, names, "p99 displacement (px/frame)", "{:.0f}")
    axes[0, 0].set_title("p99 displacement, px/frame", fontsize=9)
    axes[0, 0].set_xlabel("keypoint")
    axes[0, 0].set_ylabel("camera")
    _heatmap(axes[0, 1], 100 * np.asarray(s["jump_fraction"]), cameras, names, f"% of frames with a jump > {jump_px:g} px",
             "{:.1f}", cmap="magma")
    axes[0, 1].set_title(f"% of frames with a jump > {jump_px:g} px", fontsize=9)
    axes[0, 1].set_xlabel("keypoint")
    return fig


def reprojection(errors: np.ndarray, cameras: Sequence[str], names: Sequence[str], max_px: float = 20.0) -> Figure:
    """Triangulation reprojection error ``(frames, cameras, keypoints)`` px: histogram per camera, median heatmap."""
    errors = np.asarray(errors, float)
    fig, axes = _figure("Triangulation reprojection error", CAPTIONS["reprojection"], (13, 4.5), ncols=2)
    ax = axes[0, 0]
    bins = np.linspace(0, max_px, 41)
    for c, cam in enumerate(cameras):
        e = errors[:, c][np.isfinite(errors[:, c])]
        ax.hist(np.clip(e, 0, max_px), bins=bins, histtype="step", label=f"{cam} (median {np.median(e):.2f})"
                if e.size else f"{cam} (none)")
    ax.set_xlabel(f"reprojection error (px, clipped at {max_px:g})")
    ax.set_ylabel("count (frames × keypoints)")
    ax.legend(fontsize=7)
    ax.set_title("per camera", fontsize=9)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(errors, axis=0)
    _heatmap(axes[0, 1], med, cameras, names, "median error (px)", "{:.1f}", cmap="magma")
    axes[0, 1].set_title("median per camera × keypoint, px", fontsize=9)
    axes[0, 1].set_xlabel("keypoint")
    return fig


def bone_lengths(series: dict[str, np.ndarray], bone_names: Sequence[str], fps: float = 30.0) -> Figure:
    """Bone-length distributions and drift over time, one entry per source (``{"triangulation": (T, E) mm, ...}``)."""
    fig, axes = _figure("3D bone lengths: distribution and drift over time", CAPTIONS["bone_lengths"], (14, 5),
                        ncols=2)
    ax = axes[0, 0]
    n_src = max(1, len(series))
    width = 0.8 / n_src
    colors = ["tab:blue", "tab:orange", "tab:green"]
    for s, (label, lengths) in enumerate(series.items()):
        data = [v[np.isfinite(v)] for v in np.asarray(lengths, float).T]
        data = [d if d.size else np.array([np.nan]) for d in data]
        pos = np.arange(len(bone_names)) + (s - (n_src - 1) / 2) * width
        bp = ax.boxplot(data, positions=pos, widths=width * 0.9, showfliers=False, patch_artist=True,
                        manage_ticks=False)
        for patch in bp["boxes"]:
            patch.set_facecolor(colors[s % 3])
            patch.set_alpha(0.5)
        ax.plot([], [], color=colors[s % 3], lw=6, alpha=0.5, label=label)
    ax.set_xticks(range(len(bone_names)), bone_names, rotation=90, fontsize=7)
    ax.set_ylabel("bone length (mm)")
    ax.legend(fontsize=8)
    ax.set_title("distribution", fontsize=9)
    ax = axes[0, 1]
    for s, (label, lengths) in enumerate(series.items()):
        lengths = np.asarray(lengths, float)
        centres, med = metrics.drift(lengths, max(1, min(20, lengths.shape[0] // 10)))
        rel = med - metrics._nan_quantiles(lengths, 0, (0.5,))[0]
        for e in range(rel.shape[1]):
            ax.plot(centres / fps, rel[:, e], color=colors[s % 3], alpha=0.5, lw=1,
                    label=label if e == 0 else None)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("windowed median − session median (mm)")
    ax.set_title("drift (one line per bone)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def missing(missing_2d: np.ndarray | None, missing_3d: dict[str, np.ndarray], cameras: Sequence[str],
            names: Sequence[str]) -> Figure:
    """Fraction of frames with each keypoint missing: 2D per camera (heatmap) and 3D per source (bars)."""
    fig, axes = _figure("Fraction of frames with each keypoint missing", CAPTIONS["missing"], (13, 4.5), ncols=2)
    if missing_2d is not None:
        _heatmap(axes[0, 0], 100 * np.asarray(missing_2d), cameras, names, "% frames missing (2D, conf < threshold)",
                 "{:.0f}", cmap="Reds", vmin=0, vmax=100)
        axes[0, 0].set_title("2D detections, % of frames", fontsize=9)
        axes[0, 0].set_xlabel("keypoint")
    else:
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "no 2D keypoints", ha="center")
    ax = axes[0, 1]
    n_src = max(1, len(missing_3d))
    width = 0.8 / n_src
    for s, (label, frac) in enumerate(missing_3d.items()):
        ax.bar(np.arange(len(frac)) + (s - (n_src - 1) / 2) * width, 100 * np.asarray(frac), width, label=label)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("% of frames missing (3D, NaN)")
    ax.set_ylim(0, 100)
    ax.set_title("3D positions", fontsize=9)
    if missing_3d:
        ax.legend(fontsize=8)
    return fig


def calibration(cameras: Sequence[str], positions: np.ndarray, residual_px: np.ndarray | None,
                residual_label: str = "median reprojection residual (px)") -> Figure:
    """Calibration summary: per-camera residuals (if the calibration step recorded them) and camera centres (mm)."""
    fig, axes = _figure("Calibration: residuals and camera positions", CAPTIONS["calibration"], (12, 4.5), ncols=2)
    ax = axes[0, 0]
    if residual_px is not None:
        ax.bar(range(len(cameras)), np.asarray(residual_px, float), color="tab:purple")
        ax.set_xticks(range(len(cameras)), cameras)
        ax.set_ylabel(residual_label)
        ax.set_title("residual per camera", fontsize=9)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "the calibration recorded no residuals", ha="center", va="center", color="#a33")
    ax = axes[0, 1]
    positions = np.asarray(positions, float)
    ax.scatter(positions[:, 0], positions[:, 1], c=positions[:, 2], cmap="coolwarm")
    for cam, p in zip(cameras, positions):
        ax.annotate(f"{cam} (z={p[2]:.0f})", p[:2], fontsize=7)
    ax.set_xlabel("x (mm, top-camera frame)")
    ax.set_ylabel("y (mm)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("camera centres, seen along z", fontsize=9)
    return fig


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as PNG atomically."""
    from mck.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
