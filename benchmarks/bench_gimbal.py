"""GIMBAL sampler speed: s/iteration and compile time at the issue's reference shape (100 frames × 6 cameras ×
18 keypoints × 180 pose states, float64), against a baseline measured in the same run: the same sweep with the
lab's O(N·S³) associative-scan state filter (dynamax's formulation). Also a long-session shape (S = 50, K = 14).

The lab's implementation's s/iteration at the reference shape (``LAB_S_PER_ITER``; figures: docs/algorithms.md,
Measured figures) is quoted from issue #6, not re-measured: it is not installed here.

    python -m benchmarks.bench_gimbal [--frames 100] [--long-frames 21600] [--iters 30]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import mck.gimbal  # noqa: F401  (x64)
from mck.gimbal import prepare_chain, run_iterations
from mck.synth.rig import make_rig
from mck.geometry import projection_matrices

LAB_S_PER_ITER = 0.28


def problem(frames: int, keypoints: int, states: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    parents = np.r_[0, [rng.integers(max(0, k - 3), k) for k in range(1, keypoints)]]
    mus = rng.normal(size=(states, keypoints, 3))
    mus /= np.linalg.norm(mus, axis=-1, keepdims=True)
    mus[:, 0] = [1, 0, 0]
    kappas = rng.uniform(2, 50, size=(states, keypoints))
    kappas[:, 0] = 0
    radii = np.r_[0, rng.uniform(8, 25, keypoints - 1)]
    params = {"obs_inlier_variance": np.full((6, keypoints), 4.0), "parents": parents, "radii": radii,
              "radii_std": np.r_[0, rng.uniform(1, 3, keypoints - 1)], "kappas": kappas, "mus": mus,
              "pis": np.full(states, 1.0 / states), "indices_egocentric": [0, 2]}
    x = np.zeros((frames, keypoints, 3))
    for k in range(1, keypoints):
        x[:, k] = x[:, parents[k]] + radii[k] * mus[0, k]
    x += np.array([0, 0, 610.0]) + np.cumsum(rng.normal(scale=1.0, size=(frames, 1, 3)), axis=0)
    rig = make_rig()
    P = projection_matrices(rig.extrinsics, [(K, np.zeros(5)) for K in rig.Ks])
    h = np.einsum("cij,nkj->ncki", P[:, :, :3], x) + P[None, :, None, :, 3]
    uv = h[..., :2] / h[..., 2:] + rng.normal(scale=2.0, size=(frames, 6, keypoints, 2))
    conf = rng.uniform(0.3, 1.0, size=uv.shape[:3])
    return uv, conf, P, params, x


def time_sampler(uv, conf, P, params, x, iters: int, **options) -> tuple[float, float]:
    """(compile seconds, steady seconds per iteration)."""
    model, data, state, sweep = prepare_chain(uv, conf, P, params, n_iters=10 ** 6, init_positions=x, **options)
    t0 = time.perf_counter()
    state, _ = run_iterations(model, data, state, 0, iters, seed=0, options=sweep)
    jax.block_until_ready(state.positions)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, _ = run_iterations(model, data, state, iters, 2 * iters, seed=0, options=sweep)
    jax.block_until_ready(state.positions)
    steady = (time.perf_counter() - t0) / iters
    return max(first - steady * iters, 0.0), steady


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--long-frames", type=int, default=21600)
    ap.add_argument("--iters", type=int, default=30)
    args = ap.parse_args()
    print(f"device: {jax.default_backend()} ({jax.devices()[0].device_kind}), x64")
    uv, conf, P, params, x = problem(args.frames, 18, 180)
    base_compile, base = time_sampler(uv, conf, P, params, x, max(args.iters // 3, 5), state_filter="parallel")
    ours_compile, ours = time_sampler(uv, conf, P, params, x, args.iters)
    print(f"\nreference shape {args.frames} frames × 6 cameras × 18 keypoints × 180 states:")
    print(f"  baseline (lab's associative-scan filter) {base:.4f} s/iteration  (compile {base_compile:.1f} s)")
    print(f"  mck sequential FFBS                      {ours:.4f} s/iteration  (compile {ours_compile:.1f} s)")
    print(f"  ratio vs baseline ×{base / ours:.1f};  vs the lab's quoted {LAB_S_PER_ITER} s/iteration "
          f"×{LAB_S_PER_ITER / ours:.1f};  target ≤ 0.028 s: {'met' if ours <= 0.028 else 'NOT met'}")
    # The fitted observation model (mck.gimbal.observation_fit) gives every detection its own inlier variance.
    _, fitted = time_sampler(uv, conf, P, params, x, args.iters, obs_inlier_conf_exponent=1.5, conf_center=-4.3,
                             conf_gain=0.6, obs_outlier_variance=260.0)
    print(f"  mck, fitted observation model            {fitted:.4f} s/iteration  (×{fitted / ours:.2f} the lab's model)")
    if args.long_frames:
        uv, conf, P, params, x = problem(args.long_frames, 14, 50, seed=1)
        compile_s, per = time_sampler(uv, conf, P, params, x, 5)
        print(f"\nlong session {args.long_frames} frames × 6 × 14 × 50 states (blocks of 4096): {per:.3f} s/iteration "
              f"(compile {compile_s:.1f} s); 5000 iterations ≈ {per * 5000 / 60:.0f} min; "
              f"{per / args.long_frames * 1e6:.1f} µs per frame·iteration")


if __name__ == "__main__":
    main()
