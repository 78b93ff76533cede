"""Iterations to convergence of GIMBAL on a demo-like synthetic session (keypoints only, the mouse, 200 frames,
DLT initialisation, the lab's 5000-iteration schedule scaled by ``--iters``): split R̂ and ESS of 16 watched
frames' positions after every ``--chunk`` iterations (second half of the run so far), the first check that
passes, and the 3D error of a run that stops there against the full schedule.

    python -m benchmarks.bench_gimbal_convergence [--frames 200] [--iters 3000] [--chunk 100]

``--sizes 2000,10000,50000`` instead measures how iterations-to-converge grow with the session's length: per size
one chain on the lab's schedule (``--iters`` iterations, burn-in 80 %) that stops at the first check that passes
(R̂ ≤ 1.05, ESS ≥ 50), printing that iteration, seconds per iteration and the wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mck.gimbal  # noqa: F401  (x64)
from mck.gimbal import smooth
from mck.gimbal.convergence import converged
from mck.synth.keypoints import animal_poses, gimbal_params, keypoint_session


def _params(states: int) -> dict:
    """GIMBAL parameters fitted to the synthetic mouse's poses (the same for every run of this benchmark)."""
    x, parents = animal_poses(2000, seed=7)
    return gimbal_params(x, parents, num_states=states, num_iters=50)


class _Converged(Exception):
    """Raised by the report hook at the first passing check, to end a sizes run there."""


def converge_by_size(sizes: list[int], iters: int, chunk: int, states: int) -> None:
    """Iterations to the first passing convergence check per session length (see the module docstring)."""
    from mck.gimbal import prepare_chain, run_chain

    params = _params(states)
    print(f"{'frames':>8} {'converged at':>12} {'R-hat max':>9} {'ESS min':>8} {'s/iter':>7} {'wall s':>7}", flush=True)
    for frames in sizes:
        s = keypoint_session(frames, seed=0)
        model, data, state, options = prepare_chain(s.uv, s.conf, s.camera_matrices, params, n_iters=iters,
                                                    burn_in=int(0.8 * iters), seed=0)
        seen: list[dict] = []

        def report(iteration: int, summary: dict) -> None:
            seen.append(summary)
            if converged(summary):
                raise _Converged

        t0 = time.perf_counter()
        try:
            run_chain(model, data, state, iters, seed=0, options=options, chunk_iters=chunk, report=report)
        except _Converged:
            pass
        wall = time.perf_counter() - t0
        last = seen[-1]
        at = last["iteration"] if converged(last) else None
        print(f"{frames:>8} {str(at):>12} {last['rhat_max']:>9.3f} {last['ess_min']:>8.0f} "
              f"{wall / last['iteration']:>7.3f} {wall:>7.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--states", type=int, default=10)
    ap.add_argument("--sizes", default="", help="comma-separated session lengths (frames): iterations to converge")
    args = ap.parse_args()
    if args.sizes:
        converge_by_size([int(v) for v in args.sizes.split(",")], args.iters, args.chunk, args.states)
        return
    params = _params(args.states)
    s = keypoint_session(args.frames, seed=0)
    burn = int(0.8 * args.iters)
    kw = dict(n_iters=args.iters, burn_in=burn, seed=0, chunk_iters=args.chunk)
    t0 = time.perf_counter()
    full = smooth(s.uv, s.conf, s.camera_matrices, params, **kw)
    t_full = time.perf_counter() - t0
    err = lambda r: float(np.mean(np.linalg.norm(r.positions - s.positions, axis=-1)))  # noqa: E731
    print(f"demo-like session: {args.frames} frames, {args.iters} iterations (burn-in {burn}), "
          f"checks every {args.chunk}")
    print(f"{'iteration':>9} {'R-hat max':>9} {'R-hat med':>9} {'ESS min':>8} {'ESS med':>8}")
    for d in full.diagnostics:
        print(f"{d['iteration']:>9} {d['rhat_max']:>9.3f} {d['rhat_median']:>9.3f} {d['ess_min']:>8.0f} "
              f"{d['ess_median']:>8.0f}")
    for thr, ess in ((1.05, 50.0), (1.01, 100.0)):
        first = next((d["iteration"] for d in full.diagnostics if converged(d, thr, ess)), None)
        print(f"first pass of R-hat ≤ {thr} and ESS ≥ {ess:.0f}: iteration {first}")
    t0 = time.perf_counter()
    stop = smooth(s.uv, s.conf, s.camera_matrices, params, stop_when_converged=True, **kw)
    t_stop = time.perf_counter() - t0
    print(f"full schedule: {full.iterations} iterations, mean 3D error {err(full):.3f} mm ({t_full:.0f} s)")
    print(f"stop_when_converged (R-hat 1.05, ESS 50): burn-in ended at {stop.converged_at}, {stop.iterations} "
          f"iterations, mean 3D error {err(stop):.3f} mm ({t_stop:.0f} s)")


if __name__ == "__main__":
    main()
