"""Sync and dropped-frame detection from the keypoints themselves (pure numpy).

For each camera, its 2D detections are compared with the projection of the 3D points triangulated from the
*other* cameras, with the camera's rows shifted by ``k`` frames: ``r_k(t) = median_keypoints |uv_c(t + k) −
proj_c(X_others(t))|``. In sync, ``k = 0`` fits best. Per time window the best shift is taken when it wins clearly
(the animal must move); runs of equal shifts become segments, and the frame where a run starts is found exactly
(the split that minimises the summed per-frame residuals around the boundary).

Segments ``{"start", "end", "offset"}`` cover the rows; ``offset: None`` marks triggers the camera lost (where
its offset drops by that many). Offset convention: ``offset = k`` means the camera's row ``t + k`` shows trigger row ``t``. ``k < 0``: the camera
is ahead (it lost ``|k|`` frames earlier — an undeclared dropped frame, or it started late); ``k > 0``: it lags
(extra frames, or it started early). :func:`apply_offsets` puts the rows back: ``fixed[t] = raw[t + k(t)]``.
"""

from __future__ import annotations

import warnings

import numpy as np

from mck.geometry import project, triangulate


def shift_rows(a: np.ndarray, k: int) -> np.ndarray:
    """``out[t] = a[t + k]`` (NaN outside), along axis 0."""
    out = np.full(a.shape, np.nan)
    T = len(a)
    if k >= 0:
        out[: max(T - k, 0)] = a[k:]
    else:
        out[-k:] = a[: T + k]
    return out


def shift_residuals(uv: np.ndarray, conf: np.ndarray, extrinsics: np.ndarray, intrinsics, camera: int,
                    shifts, conf_threshold: float = 0.3, min_keypoints: int = 3) -> np.ndarray:
    """(len(shifts), T) px: per frame, the median over keypoints of camera ``camera``'s detections at row
    ``t + k`` against the projection of the points triangulated at row ``t`` from the other cameras (NaN where
    fewer than ``min_keypoints`` keypoints are usable). uv (T, C, K, 2) distorted px, conf (T, C, K)."""
    uv = np.where((np.nan_to_num(conf) >= conf_threshold)[..., None], uv, np.nan)
    others = uv.copy()
    others[:, camera] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        X = triangulate(others, extrinsics, intrinsics, conf=np.nan_to_num(conf))
    proj = project(X, np.asarray(extrinsics)[camera:camera + 1], [intrinsics[camera]])[:, 0]   # (T, K, 2)
    obs = uv[:, camera]
    out = np.full((len(shifts), len(uv)), np.nan)
    for i, k in enumerate(shifts):
        err = np.linalg.norm(shift_rows(obs, int(k)) - proj, axis=-1)                      # (T, K)
        enough = np.isfinite(err).sum(1) >= min_keypoints
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(err, axis=1)
        out[i] = np.where(enough, med, np.nan)
    return out


def _window_scores(res: np.ndarray, window: int, clip_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) → scores (W, S) mean clipped residual per window, and frames with data per window (W,)."""
    S, T = res.shape
    W = max(1, int(np.ceil(T / window)))
    pad = W * window - T
    r = np.concatenate([np.minimum(res, clip_px), np.full((S, pad), np.nan)], axis=1).reshape(S, W, window)
    ok = np.isfinite(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (np.where(ok, r, 0).sum(-1) / ok.sum(-1)).T
    return scores, ok.all(0).sum(-1)


def _split(res_a: np.ndarray, res_b: np.ndarray, gap: int = 0) -> int:
    """The index s minimising Σ_{t<s−gap} a(t) + Σ_{t≥s} b(t) (rows in the gap — triggers the camera lost — and
    rows without both residuals count for neither)."""
    both = np.isfinite(res_a) & np.isfinite(res_b)
    a = np.where(both, res_a, 0.0)
    b = np.where(both, res_b, 0.0)
    n = len(a)
    head = np.concatenate([[0.0], np.cumsum(a)])                         # head[i] = Σ_{t<i} a
    tail = np.concatenate([np.cumsum(b[::-1])[::-1], [0.0]])              # tail[i] = Σ_{t≥i} b
    s = np.arange(gap, n + 1)
    return int(s[np.argmin(head[s - gap] + tail[s])]) if len(s) else n


def detect_offsets(uv: np.ndarray, conf: np.ndarray, extrinsics: np.ndarray, intrinsics, lengths=None,
                   max_shift: int = 3, window: int = 300, conf_threshold: float = 0.3, min_gain_px: float = 0.3,
                   min_z: float = 6.0, clip_px: float = 50.0, min_frames: int = 20) -> dict:
    """Per camera, the frame offsets that fit the other cameras best, as segments over the session.

    uv (T, C, K, 2) distorted px on the session's row grid (NaN = missing), conf (T, C, K); ``lengths`` (C,) each
    camera's own frame count (default: all T): a camera with ``d`` more/fewer frames than the most common count
    is also tested at offsets ``d ± max_shift``. A window's best shift counts when it beats the runner-up by
    ``min_gain_px`` on average and surely (paired over the window's frames, mean / standard error > ``min_z``); windows without a clear winner take their neighbours' shift.

    Returns {"rows", "window", "shifts" (S,), "cameras": [{"segments": [{"start", "end", "offset"}], "scores"
    (W, S) list, "best" (W,) list (None: undecided), "frames"}], "findings": [{"camera", "offset", "start",
    "kind", "frames"}]}; camera entries in the input's order, findings name cameras by index."""
    uv = np.asarray(uv, float)
    T, C = uv.shape[:2]
    lengths = np.full(C, T) if lengths is None else np.asarray(lengths, int)
    values, counts = np.unique(lengths, return_counts=True)
    reference = int(values[np.argmax(counts)])
    window = int(max(min(window, T), 1))
    cams, findings = [], []
    for c in range(C):
        d = int(lengths[c] - reference)
        shifts = sorted(set(range(-max_shift, max_shift + 1)) | set(range(d - max_shift, d + max_shift + 1)))
        res = shift_residuals(uv, conf, extrinsics, intrinsics, c, shifts, conf_threshold)
        scores, nframes = _window_scores(res, window, clip_px)
        best: list[int | None] = []
        for w in range(len(scores)):
            s = scores[w]
            if nframes[w] < min_frames or np.isfinite(s).sum() < 2:
                best.append(None)
                continue
            order = np.argsort(np.where(np.isfinite(s), s, np.inf))
            b, second = s[order[0]], s[order[1]]
            # paired over the window's frames: how surely the best shift beats the runner-up
            seg = slice(w * window, min((w + 1) * window, T))
            diff = np.minimum(res[order[1], seg], clip_px) - np.minimum(res[order[0], seg], clip_px)
            diff = diff[np.isfinite(diff)]
            z = diff.mean() / max(diff.std() / np.sqrt(len(diff)), 1e-9) if len(diff) >= min_frames else 0.0
            clear = (second - b) > min_gain_px and z > min_z
            best.append(int(shifts[order[0]]) if clear else None)
        # fill undecided windows from the previous decision (else the next, else 0)
        filled = list(best)
        last = next((b for b in best if b is not None), 0)
        for w, b in enumerate(best):
            if b is None:
                filled[w] = last
            else:
                last = b
        # segments: runs of equal shifts, boundaries placed at the exact frame
        segments = []
        start = 0
        for w in range(1, len(filled) + 1):
            if w < len(filled) and filled[w] == filled[w - 1]:
                continue
            end = T if w == len(filled) else None
            if end is None:
                a, b = shifts.index(filled[w - 1]), shifts.index(filled[w])
                lo, hi = max((w - 1) * window, start), min((w + 1) * window, T)
                gap = max(filled[w - 1] - filled[w], 0)                  # triggers lost at the change
                end = lo + _split(res[a, lo:hi], res[b, lo:hi], gap)
                segments.append({"start": int(start), "end": int(end - gap), "offset": int(filled[w - 1])})
                if gap:
                    segments.append({"start": int(end - gap), "end": int(end), "offset": None})
            else:
                segments.append({"start": int(start), "end": int(end), "offset": int(filled[w - 1])})
            start = end
        segments = [s for s in segments if s["end"] > s["start"]]
        cams.append({"segments": segments, "scores": np.round(scores, 3).tolist(), "best": best,
                     "shifts": [int(k) for k in shifts], "frames": int(lengths[c]), "extra_frames": d})
        previous, lost_from = 0, None
        for s in segments:
            if s["offset"] is None:                                      # lost triggers: the change starts here
                lost_from = s["start"]
                continue
            if s["offset"] != previous:
                start = s["start"] if lost_from is None else lost_from
                kind = "constant offset" if start == 0 else "offset change"
                findings.append({"camera": c, "offset": s["offset"], "start": start, "end": s["end"],
                                 "kind": kind, "extra_frames": d})
            previous, lost_from = s["offset"], None
        if d != 0:
            findings.append({"camera": c, "offset": None, "start": None, "end": None, "kind": "frame count",
                             "extra_frames": d})
    return {"rows": reference, "window": window, "cameras": cams, "findings": findings}


def offsets_per_row(segments: list[dict], rows: int) -> np.ndarray:
    """(rows,) float: each row's offset from a camera's segments (0 outside them, NaN for lost triggers)."""
    k = np.zeros(rows)
    for s in segments:
        k[max(0, s["start"]): min(rows, s["end"])] = np.nan if s["offset"] is None else s["offset"]
    return k


def apply_offsets(per_camera: list[np.ndarray], segments_per_camera: list[list[dict]], rows: int) -> list[np.ndarray]:
    """Each camera's row array ``(T_c, ...)`` re-indexed by its detected offsets: ``out[t] = raw[t + k(t)]`` (NaN
    where that row does not exist), ``rows`` rows each."""
    out = []
    for arr, segments in zip(per_camera, segments_per_camera):
        arr = np.asarray(arr, dtype=float)
        k = offsets_per_row(segments, rows)
        src = np.arange(rows) + np.nan_to_num(k, nan=-10 ** 9).astype(int)
        ok = (src >= 0) & (src < len(arr))
        full = np.full((rows,) + arr.shape[1:], np.nan)
        full[ok] = arr[src[ok]]
        out.append(full)
    return out


def describe(finding: dict, camera: str) -> str:
    """One line for a finding, with the fix."""
    k, start = finding["offset"], finding["start"]
    if finding["kind"] == "frame count":
        d = finding.get("extra_frames", 0)
        return (f"{camera} has {abs(d)} {'more' if d > 0 else 'fewer'} frame{'s' if abs(d) != 1 else ''} than the "
                f"other cameras: list its frames in aligned_frame_numbers.csv or re-run with project.sync=auto")
    where = f"from frame {start:,}" if start else "from the start"
    if k == 0:
        return (f"{camera} is back in sync {where}: check aligned_frame_numbers.csv there")
    lead = f"{abs(k)} frame{'s' if abs(k) != 1 else ''} {'ahead' if k < 0 else 'late'}"
    cause = ("(frames lost there)" if k < 0 else "(extra frames there)") if start else \
        ("(it started late or lost its first frames)" if k < 0 else "(it started early)")
    return (f"{camera} is {lead} {where} {cause}: add the drop to aligned_frame_numbers.csv "
            f"or re-run with project.sync=auto")


SYNC_MODES = ("off", "auto")


def sync_for(mode: str, path: str | None, item: str | None = None) -> dict | None:
    """The detected alignment a step should use: ``mode`` ``off`` → None; ``auto`` → the session's sync.json
    (InputError naming the fix when it does not exist yet)."""
    from mck.errors import InputError

    if mode not in SYNC_MODES:
        raise InputError(f"sync={mode!r} is not one of {', '.join(SYNC_MODES)}", item=item,
                         fix="set project.sync=off or auto")
    if mode != "auto":
        return None
    result = load_sync(path)
    if result is None:
        raise InputError("sync=auto but this session has no sync check yet", item=item, path=path,
                         fix="run step=sync_check for it first, or set project.sync=off")
    return result


def load_sync(path: str | None) -> dict | None:
    """A ``{session}.sync.json`` (None when absent)."""
    import json
    import os

    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def align_rows(per_camera: list[np.ndarray], alignment: np.ndarray | None, cameras: list[str],
               sync: dict | None = None) -> list[np.ndarray]:
    """Each camera's per-frame array on the session's trigger rows: the declared alignment (``mck.alignment``),
    then, with a ``sync`` result (``{session}.sync.json``), the detected offsets on top (cameras of unequal length
    are padded first, so a camera with extra or missing frames is re-indexed instead of refused)."""
    from mck.alignment import apply_alignment

    if sync is None:
        return apply_alignment(per_camera, alignment, cameras)
    if alignment is not None:
        arrays = apply_alignment(per_camera, alignment, cameras)
    else:
        arrays = [np.asarray(a, dtype=float) for a in per_camera]
    names = list(sync.get("camera_names") or cameras)
    segments = [sync["cameras"][names.index(c)]["segments"] if c in names else [] for c in cameras]
    return apply_offsets(arrays, segments, int(sync["rows"]))


def sync_note(sync: dict | None) -> str:
    """What the detected alignment changed, for logs and job records."""
    if sync is None:
        return "off"
    moved = [f["camera_name"] if "camera_name" in f else str(f["camera"]) for f in sync.get("findings", [])]
    return "auto: detected offsets applied" + (f" ({', '.join(dict.fromkeys(moved))})" if moved else
                                               " (none found)")
