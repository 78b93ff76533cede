"""GIMBAL in float32 against float64: 3D error on the same data and chain seeds, and seconds per iteration.

Two synthetic sets (keypoints only, :mod:`mck.synth.keypoints`): demo-like (the mouse, 14 keypoints, 200 frames —
the size ``python -m mck demo`` smooths) and Rat7M-like (18 keypoints, the rat-sized body). Both dtypes start
from the same DLT triangulation; each runs chain seeds 0 and 1, so the float64 seed-to-seed difference shows the
Monte Carlo noise against which the float32 − float64 difference is judged.

    python -m benchmarks.bench_gimbal_float32 [--frames 200] [--iters 300] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mck.gimbal  # noqa: F401  (x64)
from mck.gimbal import smooth
from mck.synth.keypoints import animal_poses, gimbal_params, keypoint_session


def compare(animal: str, frames: int, iters: int, seeds, num_states: int = 10) -> dict:
    x, parents = animal_poses(2000, seed=7, animal=animal)
    params = gimbal_params(x, parents, num_states=num_states, num_iters=50)
    session = keypoint_session(frames, seed=0, animal=animal)
    out = {"animal": animal, "frames": frames, "iters": iters}
    for dtype in ("float64", "float32"):
        errors, speeds = [], []
        for seed in seeds:
            t0 = time.perf_counter()
            r = smooth(session.uv, session.conf, session.camera_matrices, params, n_iters=iters, seed=seed,
                       dtype=dtype, chunk_iters=iters)
            speeds.append((time.perf_counter() - t0) / iters)
            errors.append(float(np.mean(np.linalg.norm(r.positions - session.positions, axis=-1))))
        out[dtype] = {"mean_error_mm": errors, "s_per_iter_incl_compile": speeds}
    e64, e32 = np.mean(out["float64"]["mean_error_mm"]), np.mean(out["float32"]["mean_error_mm"])
    out["relative_difference"] = float(abs(e32 - e64) / e64)
    out["seed_spread_float64"] = float(np.ptp(out["float64"]["mean_error_mm"]) / e64)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"GIMBAL float32 vs float64: {args.frames} frames, {args.iters} iterations, chain seeds {seeds}")
    for animal in ("mouse", "rat"):
        r = compare(animal, args.frames, args.iters, seeds)
        print(f"{animal:5s} mean 3D error mm  float64 {r['float64']['mean_error_mm']}  "
              f"float32 {r['float32']['mean_error_mm']}")
        print(f"      float32 vs float64 {r['relative_difference']:.2%} (float64 seed spread "
              f"{r['seed_spread_float64']:.2%}); s/iter incl. compile float64 "
              f"{np.mean(r['float64']['s_per_iter_incl_compile']):.3f}, float32 "
              f"{np.mean(r['float32']['s_per_iter_incl_compile']):.3f}")
        print(f"      within 1 %: {'yes' if r['relative_difference'] <= 0.01 else 'no'}")


if __name__ == "__main__":
    main()
