"""Step ``gimbal`` (session level): six ``keypoints.h5`` + the robust triangulation + the calibration + fitted
parameters → ``{session}.gimbal.npy`` (T, 14, 3) float32 mm, GIMBAL node order, world frame (the lab's format) and
``{session}.ll.npy`` (n_iters,) float64 log-joint trace (docs/algorithms.md §C.7), and ``{session}.gimbal_obs.npy``
(T, 14) uint8: per frame and keypoint (node order), how many cameras saw it with confidence ≥ ``min_conf``. Where it
is 0 the position is the prior's extrapolation, not a measurement; QC and export read it. A session where fewer than
``min_observed_fraction`` of the frames have any observation is refused.

Detections are undistorted with the session's calibration and spread onto trigger rows by the alignment file
(dropped frames are missing views, masked out of the likelihood). The chain state is checkpointed every
``checkpoint_every`` iterations to ``{output}.checkpoint.npz``; a killed, timed-out or pre-empted job resumes
there and produces exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from mck.alignment import load_alignment
from mck.calibration_io import load_camera_params, warn_if_failed_qc
from mck.errors import InputError
from mck.geometry import projection_matrices, undistort_points
from mck.io import atomic_path, save_npy
from mck.keypoints_io import load_keypoints
from mck.runtime import Preempted, stop_requested
from mck.skeleton import to_node_order

OBSERVATION_MODELS = ("fitted", "lab")
#: The fitted observation model's keys in ``gimbal_params.p`` (``obs_model_`` + name; see mck.gimbal.observation_fit).
FITTED_KEYS = ("inlier_variance", "confidence_exponent", "outlier_variance", "outlier_center", "outlier_gain")
PER_CAMERA_KEYS = ("obs_inlier_variance", "obs_model_inlier_variance")

#: Below this HMC acceptance rate the chain has barely left its initialisation (the log says so).
LOW_ACCEPTANCE = 0.05


def observation_counts(uv: np.ndarray, conf: np.ndarray, min_conf: float) -> np.ndarray:
    """``(T, C, K, 2)`` uv and ``(T, C, K)`` conf → ``(T, K)`` uint8: cameras with a finite uv and conf ≥ min_conf."""
    seen = np.isfinite(uv).all(axis=-1) & np.isfinite(conf) & (np.nan_to_num(conf, nan=-1.0) >= min_conf)
    return seen.sum(axis=1).astype(np.uint8)


def check_observations(counts: np.ndarray, min_observed_fraction: float, item: str = "") -> int:
    """Refuse a session whose frames mostly have no 2D observation; returns the number of unobserved frames."""
    observed = (counts > 0).any(axis=1)
    n, total = int(observed.sum()), len(counts)
    if total == 0 or n == 0:
        raise InputError("no 2D observations in any frame (every keypoint is missing or below min_conf)", item=item,
                         fix="re-run step=hrnet for this session, or check its keypoints.h5")
    if n < min_observed_fraction * total:
        raise InputError(f"only {n} of {total} frames have a 2D observation (less than "
                         f"min_observed_fraction={min_observed_fraction}); GIMBAL would invent the rest from its prior",
                         item=item, fix="re-run step=hrnet for this session, or lower "
                                        "step.func_kwargs.min_observed_fraction")
    return total - n


def obs_path(output_path: str) -> str:
    """``{session}.gimbal.npy`` → ``{session}.gimbal_obs.npy``."""
    base = str(output_path)
    return (base[: -len(".gimbal.npy")] if base.endswith(".gimbal.npy") else os.path.splitext(base)[0]) + \
        ".gimbal_obs.npy"


def trace_path(output_path: str) -> str:
    """``{session}.gimbal.npy`` → ``{session}.ll.npy``."""
    base = str(output_path)
    return (base[: -len(".gimbal.npy")] if base.endswith(".gimbal.npy") else os.path.splitext(base)[0]) + ".ll.npy"


def load_observations(keypoints_paths: dict, calibration_path: str, alignment_path: str | None, item: str = "",
                      sync: dict | None = None):
    """Undistorted uv (T, C, 14, 2) and conf (T, C, 14) in node order, and P (C, 3, 4), cameras in the given order;
    ``sync``: a detected alignment (``sync_check``) applied on top of the declared one."""
    from mck.sync import align_rows

    cameras = list(keypoints_paths)
    _, extrinsics, intrinsics = load_camera_params(calibration_path, cameras)
    uvs, confs = [], []
    for cam, (K, dist) in zip(cameras, intrinsics):
        uv, conf = load_keypoints(keypoints_paths[cam], item=item)
        uvs.append(undistort_points(uv, K, dist))
        confs.append(conf)
    alignment = load_alignment(alignment_path, cameras) if alignment_path and os.path.isfile(alignment_path) else None
    uvs = align_rows(uvs, alignment, cameras, sync)
    confs = align_rows(confs, alignment, cameras, sync)
    uv = to_node_order(np.stack(uvs, axis=1))
    conf = to_node_order(np.stack(confs, axis=1)[..., None])[..., 0]
    return uv, conf, projection_matrices(extrinsics, intrinsics), cameras


def run(keypoints_paths: dict, triangulation_path: str, calibration_path: str, params_path: str,
        alignment_path: str | None, output_path: str, output_paths: list | None = None,
        refined_calibration_path: str | None = None, calibration_source: str = "board", sync: str = "off",
        sync_path: str | None = None, n_iters: int = 5000, burn_in: int = 4000, thin: int = 5,
        seed: int = 0, checkpoint_every: int = 250, state_block_frames: int = 4096, exact_heading: bool = True,
        step_size: float = 0.2, num_leapfrog_steps: int = 5, pos_dt_variance: float = 1.0,
        observation_model: str = "fitted", obs_outlier_variance: float | None = None, position_update: str = "frames",
        dtype: str = "auto", stop_when_converged: bool = False, rhat_threshold: float = 1.05, min_ess: float = 50.0,
        watch_frames: int = 16, state_batch_blocks: int = 8, min_conf: float = 0.25,
        min_observed_fraction: float = 0.5, item: str = "",
        log: logging.Logger | None = None) -> dict:
    """Smooth one session; returns frames, iterations, s/iteration, acceptance rate, device.

    ``observation_model``: ``fitted`` uses the observation model fit_gimbal fitted to the detector
    (:mod:`mck.gimbal.observation_fit`: per-detection inlier variance from the confidence, the outlier probability
    and spread) where the parameter file has one, the lab's otherwise; ``lab`` always uses the lab's (one inlier
    variance per camera and keypoint, ρ = sigmoid(20 (0.5 − conf)), outlier variance 1e6 px²).
    ``obs_outlier_variance`` (px²) overrides either model's outlier variance. ``dtype``: float32, float64 or
    ``auto`` (float32 on a GPU, float64 on a CPU; see :func:`resolve_dtype`). Convergence (split R̂ / ESS of
    ``watch_frames`` frames' positions) is logged after every checkpoint and returned; ``stop_when_converged``
    ends the burn-in where R̂ ≤ ``rhat_threshold`` and ESS ≥ ``min_ess`` (:func:`mck.gimbal.run_chain`).
    """
    import jax

    from mck.gimbal import SamplerState, load_params, prepare_chain, run_chain
    from mck.gimbal.prepare import interpolate_positions
    from mck.gimbal.sampler import POSITION_UPDATES

    t0 = time.perf_counter()
    if position_update not in POSITION_UPDATES:
        raise InputError(f"unknown position_update {position_update!r}", item=item,
                         fix=f"set step.func_kwargs.position_update to one of {', '.join(POSITION_UPDATES)}")
    if observation_model not in OBSERVATION_MODELS:
        raise InputError(f"unknown observation_model {observation_model!r}", item=item,
                         fix=f"set step.func_kwargs.observation_model to one of {', '.join(OBSERVATION_MODELS)}")
    if obs_outlier_variance is not None and (isinstance(obs_outlier_variance, bool)
                                             or not isinstance(obs_outlier_variance, (int, float))
                                             or not obs_outlier_variance > 0):
        raise InputError(f"obs_outlier_variance={obs_outlier_variance!r} is not a positive number of px²", item=item,
                         fix="set step.func_kwargs.obs_outlier_variance to a positive number, or null for the "
                             "observation model's own")
    if not os.path.isfile(params_path):
        raise InputError("GIMBAL parameters not found", item=item, path=params_path,
                         fix="run `python -m mck step=fit_gimbal` first, or set project.weights.gimbal_params")
    try:
        params = load_params(params_path)
    except ValueError as exc:
        raise InputError(str(exc), item=item, path=params_path, fix="re-run fit_gimbal") from exc
    from mck.calibration_io import choose_calibration
    from mck.sync import sync_for, sync_note

    calibration_path, calibration_used = choose_calibration(calibration_path, refined_calibration_path,
                                                            calibration_source, item)
    sync_result = sync_for(sync, sync_path, item)
    uv, conf, P, cameras = load_observations(keypoints_paths, calibration_path, alignment_path, item=item,
                                             sync=sync_result)
    if log:
        log.info("calibration: %s (%s); sync: %s", calibration_used, calibration_path, sync_note(sync_result))
    warn_if_failed_qc(calibration_path, log or logging.getLogger("mck"), item)
    params = _params_for_cameras(params, cameras, params_path, item)
    params, observation, description = _observation_settings(params, observation_model, obs_outlier_variance)
    if log:
        log.info("observation model: %s", description)
    if not os.path.isfile(triangulation_path):
        raise InputError("triangulation not found", item=item, path=triangulation_path,
                         fix="run `python -m mck step=triangulation` for this session first")
    counts = observation_counts(uv, conf, float(min_conf))
    unobserved = check_observations(counts, float(min_observed_fraction), item)
    if unobserved and log:
        log.warning("%d of %d frames have no 2D observation: their positions are the prior's extrapolation "
                    "(marked 0 in %s)", unobserved, len(counts), os.path.basename(obs_path(output_path)))
    triangulated = to_node_order(np.load(triangulation_path))
    if triangulated.shape[0] != uv.shape[0]:
        raise InputError(f"triangulation has {triangulated.shape[0]} frames, detections {uv.shape[0]}", item=item,
                         path=triangulation_path, fix="re-run triangulation for this session")
    try:
        init = interpolate_positions(triangulated)
    except ValueError as exc:
        raise InputError(str(exc), item=item, path=triangulation_path,
                         fix="check the detections of this session (a keypoint is never confidently seen)") from exc
    dtype = resolve_dtype(dtype, jax.default_backend(), item)
    settings = dict(n_iters=int(n_iters), burn_in=int(burn_in), thin=int(thin), seed=int(seed),
                    state_block_frames=int(state_block_frames), state_batch_blocks=int(state_batch_blocks),
                    exact_heading=bool(exact_heading),
                    step_size=float(step_size), num_leapfrog_steps=int(num_leapfrog_steps),
                    pos_dt_variance=float(pos_dt_variance), position_update=str(position_update), dtype=dtype,
                    **observation)
    model, data, state, options = prepare_chain(uv, conf, P, params, init_positions=init, **settings)
    stopping = dict(stop_when_converged=bool(stop_when_converged), rhat_threshold=float(rhat_threshold),
                    min_ess=float(min_ess), watch_frames=int(watch_frames))
    fingerprint = _fingerprint({**settings, **(stopping if stop_when_converged else {})}, uv, conf, init, params)
    ckpt = Path(str(output_path) + ".checkpoint.npz")
    start, trace = 0, np.zeros(0)
    resumed = _load_checkpoint(ckpt, fingerprint, state, log)
    if resumed is not None:
        state, start, trace = resumed
    if log:
        log.info("GIMBAL: %d frames × %d cameras × %d keypoints, %d states; iterations %d→%d on %s",
                 *uv.shape[:3], params["kappas"].shape[0], start, n_iters, jax.default_backend())

    def checkpoint(state: SamplerState, iteration: int, trace_so_far: np.ndarray) -> None:
        if iteration < n_iters:
            _save_checkpoint(ckpt, fingerprint, state, iteration, trace_so_far)
            if log:
                log.info("iteration %d/%d, log joint %.6g", iteration, n_iters, trace_so_far[-1])
            if stop_requested():
                raise Preempted(f"stopped at iteration {iteration}; resumes from {ckpt.name}")

    def report(iteration: int, summary: dict) -> None:
        if log:
            log.info("convergence at iteration %d: split R-hat max %.3f (median %.3f), ESS min %.0f (median %.0f) "
                     "over the last %d iterations", iteration, summary["rhat_max"], summary["rhat_median"],
                     summary["ess_min"], summary["ess_median"], summary["draws"])

    t_run = time.perf_counter()
    result = run_chain(model, data, state, int(n_iters), seed=int(seed), options=options, start=start, trace=trace,
                       chunk_iters=int(checkpoint_every), callback=checkpoint, report=report, **stopping)
    seconds = time.perf_counter() - t_run
    if log and result.acceptance_rate < LOW_ACCEPTANCE:
        log.warning("HMC acceptance %.3f: the positions barely moved from their initialisation; lower "
                    "step.func_kwargs.step_size", result.acceptance_rate)
    save_npy(output_paths[1] if output_paths and len(output_paths) > 1 else trace_path(output_path), result.log_likelihood.astype(np.float64))
    save_npy(output_paths[2] if output_paths and len(output_paths) > 2 else obs_path(output_path), counts)
    save_npy(output_path, result.positions.astype(np.float32))
    ckpt.unlink(missing_ok=True)
    last = result.diagnostics[-1] if result.diagnostics else None
    return {"frames": int(uv.shape[0]), "unobserved_frames": unobserved, "iterations": int(n_iters),
            "resumed_at": start, "samples": result.samples,
            "acceptance_rate": round(result.acceptance_rate, 3),
            "s_per_iteration": round(seconds / max(result.iterations - start, 1), 5),
            "iterations_run": result.iterations, "converged_at": result.converged_at,
            "rhat_max": round(last["rhat_max"], 4) if last else None,
            "ess_min": round(last["ess_min"], 1) if last else None, "dtype": dtype,
            "seconds": round(time.perf_counter() - t0, 1), "device": jax.default_backend(),
            "calibration": calibration_used, "calibration_path": calibration_path, "sync": sync_note(sync_result)}


def resolve_dtype(dtype: str, backend: str, item: str = "") -> str:
    """``auto`` → float32 on GPUs (float64 runs at 1/32–1/64 of its speed there, and float32 stays within 1 % of
    float64's 3D error: benchmarks/bench_gimbal_float32.py), float64 elsewhere (the lab's precision; on 2 CPU cores
    float32 is 1.6–1.7× faster at 50k–216k frames × 50 states: 2.44 vs 4.20 s/iteration at 216k,
    benchmarks/bench_gimbal_scale.py --dtype); float32/float64 as given."""
    if dtype == "auto":
        return "float32" if backend in ("gpu", "cuda", "rocm") else "float64"
    if dtype not in ("float32", "float64"):
        raise InputError(f"unknown dtype {dtype!r}", item=item,
                         fix="set step.func_kwargs.dtype to auto, float32 or float64")
    return dtype


def _params_for_cameras(params: dict, cameras: list[str], path: str, item: str) -> dict:
    """Reorder the per-camera variances to the session's camera order when the file names its cameras."""
    names = params.get("camera_names")
    if names:
        unknown = [c for c in cameras if c not in names]
        if unknown:
            raise InputError(f"parameters were fitted for cameras {list(names)}, not {unknown}", item=item, path=path,
                             fix="re-run fit_gimbal on sessions with these cameras")
    out = dict(params)
    for key in PER_CAMERA_KEYS:
        if key not in params:
            continue
        variance = np.asarray(params[key])
        if names:
            variance = variance[[list(names).index(c) for c in cameras]]
        if variance.shape[0] != len(cameras):
            raise InputError(f"{key} is for {variance.shape[0]} cameras, the session has {len(cameras)}",
                             item=item, path=path, fix="re-run fit_gimbal for this rig")
        out[key] = variance
    return out


def _observation_settings(params: dict, observation_model: str,
                          outlier_variance: float | None) -> tuple[dict, dict, str]:
    """The parameters (with the inlier variance the model uses), prepare_chain's observation keywords and a
    one-line description for the log."""
    fitted = observation_model == "fitted" and all(f"obs_model_{k}" in params for k in FITTED_KEYS)
    if fitted:
        params = {**params, "obs_inlier_variance": params["obs_model_inlier_variance"]}
        settings = dict(conf_center=float(params["obs_model_outlier_center"]),
                        conf_gain=float(params["obs_model_outlier_gain"]),
                        obs_inlier_conf_exponent=float(params["obs_model_confidence_exponent"]),
                        obs_outlier_variance=float(params["obs_model_outlier_variance"]))
    else:
        settings = dict(conf_center=0.5, conf_gain=20.0, obs_inlier_conf_exponent=0.0, obs_outlier_variance=1e6)
    if outlier_variance is not None:
        settings["obs_outlier_variance"] = float(outlier_variance)
    label = "fitted" if fitted else ("lab's (the parameter file has no fitted one; re-run fit_gimbal)"
                                      if observation_model == "fitted" else "lab's")
    description = (f"{label}: inlier variance × conf^−{settings['obs_inlier_conf_exponent']:.2f}, "
                   f"ρ = sigmoid({settings['conf_gain']:.3g} · ({settings['conf_center']:.3g} − conf)), "
                   f"outlier variance {settings['obs_outlier_variance']:.4g} px²")
    return params, settings, description


def _fingerprint(settings: dict, uv, conf, init, params: dict) -> str:
    """Hash of everything that determines the chain: a checkpoint with another fingerprint is not resumed."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for array in (uv, conf, init, *(params[k] for k in sorted(params) if not k.endswith("names"))):
        digest.update(np.ascontiguousarray(np.nan_to_num(np.asarray(array, dtype=float))).tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, fingerprint: str, state, iteration: int, trace: np.ndarray) -> None:
    arrays = {f"state_{name}": np.asarray(value) for name, value in state._asdict().items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, fingerprint=np.array(fingerprint), iteration=np.int64(iteration), trace=trace, **arrays)


def _load_checkpoint(path: Path, fingerprint: str, template, log):
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            if str(z["fingerprint"]) != fingerprint:
                raise ValueError("written with other inputs or settings")
            fields = {}
            for name, value in template._asdict().items():
                saved = z[f"state_{name}"]
                if saved.shape != np.shape(value):
                    raise ValueError(f"{name} has shape {saved.shape}, expected {np.shape(value)}")
                fields[name] = jnp_like(saved, value)
            start, trace = int(z["iteration"]), np.asarray(z["trace"])
    except Exception as exc:  # noqa: BLE001 - a stale or corrupt checkpoint means: start over
        if log:
            log.warning("ignoring checkpoint %s (%s)", path.name, exc)
        return None
    if log:
        log.info("resuming at iteration %d from %s", start, path.name)
    return type(template)(**fields), start, trace


def jnp_like(saved: np.ndarray, value):
    import jax.numpy as jnp

    return jnp.asarray(saved, dtype=value.dtype)
