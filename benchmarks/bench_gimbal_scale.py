"""GIMBAL at session scale: peak memory and seconds per iteration from 10k to 216k frames (a two-hour session at
30 Hz), and whether both grow linearly with the number of frames.

Each size runs in its own subprocess (JAX's allocations are invisible to tracemalloc; the subprocess's
``resource.getrusage`` peak RSS is the honest figure): a keypoints-only synthetic session
(:func:`mck.synth.keypoints.keypoint_session`, 6 cameras × 14 keypoints, no video), the parameters fitted once
(50 states), then one compiled chunk (compile + 1 iteration) and ``iters`` timed iterations.
The per-state tensors of the state sampler exist for ``state_batch_blocks × state_block_frames`` frames at a time,
so memory grows with the per-frame arrays only.

    python -m benchmarks.bench_gimbal_scale [--sizes 10000,50000,216000] [--iters 6,4,2] [--dtype float64]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def _rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(frames: int, iters: int, dtype: str, params_path: str, block: int) -> dict:
    """One size, in this (fresh) process."""
    import jax

    import mck.gimbal  # noqa: F401  (x64)
    from mck.gimbal import prepare_chain, run_iterations
    from mck.synth.keypoints import keypoint_session

    with open(params_path, "rb") as f:
        params = pickle.load(f)
    t0 = time.perf_counter()
    session = keypoint_session(frames, seed=0, dtype=np.float32)
    synth_s = time.perf_counter() - t0
    model, data, state, options = prepare_chain(session.uv, session.conf, session.camera_matrices, params,
                                                n_iters=10 ** 6, init_positions=session.positions, dtype=dtype,
                                                state_block_frames=block)
    del session
    rss_ready = _rss_mb()
    t0 = time.perf_counter()
    state, _ = run_iterations(model, data, state, 0, 1, seed=0, options=options, length=iters)
    jax.block_until_ready(state.positions)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, trace = run_iterations(model, data, state, 1, 1 + iters, seed=0, options=options, length=iters)
    jax.block_until_ready(state.positions)
    per = (time.perf_counter() - t0) / iters
    return {"frames": frames, "iters": iters, "dtype": dtype, "s_per_iter": per, "compile_s": max(first - per, 0.0),
            "synth_s": synth_s, "rss_ready_mb": rss_ready, "peak_rss_mb": _peak_mb(),
            "finite": bool(np.isfinite(trace).all()), "device": jax.default_backend()}


def fit_params_file(path: str, num_states: int = 50) -> None:
    from mck.synth.keypoints import animal_poses, gimbal_params

    x, parents = animal_poses(3000, seed=7)
    with open(path, "wb") as f:
        pickle.dump(gimbal_params(x, parents, num_states=num_states, num_iters=50), f)


def run_sizes(sizes, iters, dtype: str = "float64", block: int = 4096, env=None) -> list[dict]:
    """Run every size in a subprocess; returns their result dicts."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        params_path = os.path.join(tmp, "params.pkl")
        fit_params_file(params_path)
        for frames, n in zip(sizes, iters):
            cmd = [sys.executable, "-m", "benchmarks.bench_gimbal_scale", "--worker", str(frames), "--iters", str(n),
                   "--dtype", dtype, "--params", params_path, "--block", str(block)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                raise RuntimeError(f"{frames} frames failed:\n{done.stderr[-3000:]}")
            out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def linearity(results: list[dict], key: str) -> float:
    """Largest relative deviation of ``key`` from the straight line through the smallest and largest size."""
    f = np.array([r["frames"] for r in results], float)
    y = np.array([r[key] for r in results], float)
    line = y[0] + (y[-1] - y[0]) * (f - f[0]) / (f[-1] - f[0])
    return float(np.max(np.abs(y - line) / y))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000,216000")
    ap.add_argument("--iters", default="6,4,2")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("--worker", type=int)
    ap.add_argument("--params")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, int(args.iters), args.dtype, args.params, args.block)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    iters = [int(s) for s in args.iters.split(",")]
    iters += [iters[-1]] * (len(sizes) - len(iters))
    results = run_sizes(sizes, iters, args.dtype, args.block)
    print(f"GIMBAL at session scale: 6 cameras × 14 keypoints × 50 states, {args.dtype}, "
          f"blocks of {args.block} frames, device {results[0]['device']}")
    print(f"{'frames':>8} {'iters':>5} {'s/iter':>8} {'µs/frame·iter':>14} {'compile s':>9} {'RSS ready MB':>12} "
          f"{'peak RSS MB':>11}")
    for r in results:
        print(f"{r['frames']:>8} {r['iters']:>5} {r['s_per_iter']:>8.3f} {r['s_per_iter'] / r['frames'] * 1e6:>14.2f} "
              f"{r['compile_s']:>9.1f} {r['rss_ready_mb']:>12.0f} {r['peak_rss_mb']:>11.0f}")
    if len(results) >= 3:
        print(f"deviation from a straight line: s/iter {linearity(results, 's_per_iter'):.0%}, "
              f"peak RSS {linearity(results, 'peak_rss_mb'):.0%}")
    last = results[-1]
    print(f"5000 iterations at {last['frames']} frames ≈ {last['s_per_iter'] * 5000 / 3600:.1f} h on this device")


if __name__ == "__main__":
    main()
