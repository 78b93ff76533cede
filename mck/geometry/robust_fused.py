"""The robust triangulation solver (``mck.geometry.triangulate._robust``) as one fused XLA computation per chunk of
points: undistortion, the annealed Cauchy IRLS passes, view rejection and the final solve on one chunk, whose
temporaries stay in cache. The per-view blocks of the normal matrix are built once (they depend on the observation
only), so each of the 7 solves is a 9-entry weighted sum over the views and Cramer's rule. Same arithmetic as the
numpy solver up to summation order (tests/geometry check they agree).

Inside the computation arrays are camera-major, (C, N) with the points on the minor axis, and sums over the cameras
are written as C − 1 elementwise adds of per-camera products: every operation is then a vector loop over points
(XLA's CPU reductions over a major axis, its batched 1×6 by 6×9 dots, and a weights × blocks product written out
before the sum cost 45 % more). Divisions are the costly arithmetic: one per view for the Cauchy weight and depth²
together, one reciprocal of the determinant per solve. ``group`` chunks run in one call (a loop inside the
computation: one dispatch and one transfer), and calls run on ``threads`` host threads at once (XLA runs
independent computations concurrently; one chunk is too small for its own intra-op threads).

Measured (benchmarks/bench_triangulation.py, 20k frames × 18 keypoints × 6 cameras, 2 CPU cores, two runs):
0.070–0.095 s on 2 threads, 0.112–0.146 s on one — ×190 and ×119–124 the lab's per-frame loop in the same run.
The compiled kernel on one thread, by differential timing (``--profile``; noisy): the 5 IRLS passes 27–34 ms, the
per-view blocks, first and last solve and view rejection 56–76 ms, undistortion 1–15 ms.

Shapes: ``uv`` (N, C, 2) distorted px (NaN = missing), ``weights`` (N, C) ≥ 0, ``P`` (C, 3, 4),
``K`` (C, 3, 3), ``dist`` (C, 5). Returns points (N, 3) mm (NaN with fewer than 2 views) and the views used (N, C).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mck.geometry.triangulate import CAUCHY_SCALES_PX, REJECT_PX, cramer3

#: Points per compiled chunk: 2k points × 6 views keep a chunk's per-view blocks (432 B/point, 0.9 MB) in L2.
#: 20k frames × 18 keypoints, one thread (two): chunk 512 → 0.140 (0.080), 1k → 0.159 (0.079), 2k → 0.152
#: (0.087), 4k → 0.149 (0.100) s; one chunk per call, 64k points → 0.234, all at once → 0.295 s (out of cache).
CHUNK = 2048
#: Chunks per call (looped over inside the computation): one dispatch and one transfer per ``GROUP`` chunks
#: (2k-point chunks, two threads: 1 → 0.129, 4 → 0.100, 8 → 0.090, 16 → 0.097 s).
GROUP = 8
#: Host threads at most (each runs one chunk's computation at a time).
MAX_THREADS = 8
_PAIRS = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3))


def default_threads() -> int:
    """The CPU cores this process may run on (SLURM's --cpus-per-task, taskset), at most :data:`MAX_THREADS`."""
    return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


@functools.lru_cache(maxsize=None)
def _compiled(cams: int, scales: tuple, reject_px: float, dtype: str, iterations: int, frame_major: bool,
              group: int):
    """The jitted solver for one call on ``group`` chunks (a loop over them inside the computation)."""
    import jax
    import jax.numpy as jnp

    import mck.gimbal  # noqa: F401  (64-bit JAX, as everywhere in mck)

    def over_cameras(x):
        """Σ over the leading camera axis (an array or a list per camera) as C − 1 elementwise adds."""
        total = x[0]
        for c in range(1, cams):
            total = total + x[c]
        return total

    def core(u0, v0, weights, P, K, dist):
        """``u0``, ``v0`` distorted px and ``weights``, each (C, N) → points (3, N) and views used (C, N)."""
        def column(x):                                                      # a camera parameter as (C, 1)
            return x.astype(dtype)[:, None]

        fx, fy, cx, cy = column(K[:, 0, 0]), column(K[:, 1, 1]), column(K[:, 0, 2]), column(K[:, 1, 2])
        k1, k2, p1, p2, k3 = (column(dist[:, i]) for i in range(5))
        x0, y0 = (u0.astype(dtype) - cx) * (1.0 / fx), (v0.astype(dtype) - cy) * (1.0 / fy)   # (C, 1) reciprocals

        def step(_, xy):
            """OpenCV's fixed-point undistortion (as :func:`mck.geometry.camera.undistort_points`)."""
            x, y = xy
            r2 = x * x + y * y
            icdist = 1.0 / (1 + ((k3 * r2 + k2) * r2 + k1) * r2)
            dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            return (x0 - dx) * icdist, (y0 - dy) * icdist

        # A loop, not unrolled: unrolled, XLA fuses the iterations into one expression and recomputes shared
        # subexpressions; the loop makes each iteration one pass.
        x, y = jax.lax.fori_loop(0, iterations, step, (x0, y0))
        u, v = x * fx + cx, y * fy + cy
        ok = jnp.isfinite(u) & jnp.isfinite(v) & jnp.isfinite(weights)
        u, v = jnp.where(ok, u, 0.0), jnp.where(ok, v, 0.0)
        w = jnp.where(ok, jnp.clip(weights, 0, None), 0.0).astype(dtype)
        valid = w > 0
        Pc = [[column(P[:, i, j]) for j in range(4)] for i in range(3)]
        # The rows a = u p3 − p1, b = v p3 − p2 do not change between passes, so neither do the per-view blocks
        # M_ij = a_i a_j + b_i b_j of the normal matrix: every solve is then G = Σ_c w_c M_c (9 entries) + Cramer.
        a = [u * Pc[2][j] - Pc[0][j] for j in range(4)]
        b = [v * Pc[2][j] - Pc[1][j] for j in range(4)]
        M = jnp.stack([a[i] * a[j] + b[i] * b[j] for i, j in _PAIRS], axis=1)   # (C, 9, N)

        def solve(wt):
            # (9, N); the products per camera, so that XLA fuses them into the sum (wt[:, None] * M is written
            # out first: 0.9 MB a pass)
            g = over_cameras([wt[c] * M[c] for c in range(cams)])
            a_, b_, c_, r0, d_, e_, r1, f_, r2 = (g[k] for k in range(9))
            return cramer3(a_, b_, c_, d_, e_, f_, -r0, -r1, -r2)

        def residuals(X):
            """Squared reprojection residuals (C, N) px² and depths (C, N)."""
            h = [Pc[i][0] * X[0] + Pc[i][1] * X[1] + Pc[i][2] * X[2] + Pc[i][3] for i in range(3)]
            inv = 1.0 / h[2]
            du, dv = h[0] * inv - u, h[1] * inv - v
            return du * du + dv * dv, h[2]

        def scaled(wt, depth, cauchy=1.0):
            """Weights ``wt`` / (``cauchy`` depth²), one division (they are most of the solver's arithmetic)."""
            ww = wt / (cauchy * jnp.maximum(depth, 1e-6) ** 2)
            return jnp.where(jnp.isfinite(ww), ww, 0.0)

        X = solve(w)
        for scale in scales:                                   # annealed Cauchy IRLS, on squared residuals
            res2, depth = residuals(X)
            X = solve(scaled(w, depth, 1.0 + jnp.nan_to_num(res2, nan=1e18) * (1.0 / (scale * scale))))
        res2, depth = residuals(X)
        res = jnp.where(valid, res2, jnp.inf)
        inlier = valid & (res <= reject_px * reject_px)
        # keep at least the two best views where fewer than two pass the threshold
        row = jnp.arange(cams)[:, None]
        first = jnp.argmin(res, axis=0)[None]
        second = jnp.argmin(jnp.where(row == first, jnp.inf, res), axis=0)[None]
        few = over_cameras(inlier.astype(jnp.int32)) < 2
        inlier = jnp.where(few[None], ((row == first) | (row == second)) & valid, inlier)
        X = solve(scaled(jnp.where(inlier, w, 0.0), depth))
        enough = over_cameras(valid.astype(jnp.int32)) >= 2
        X = jnp.stack([jnp.where(enough, x_, jnp.nan) for x_ in X]).astype(jnp.float64)
        return X, inlier & enough[None]

    def run(uv, weights, P, K, dist):
        """Point-major (N, C, 2), (N, C) → (N, 3), (N, C)."""
        X, used = core(uv[..., 0].T, uv[..., 1].T, weights.T, P, K, dist)
        return X.T, used.T

    def run_frames(uv, weights, P, K, dist):
        """(F, C, Kp, 2) and (F, C, Kp) → points (F, Kp, 3), used (F, C, Kp): the transposes happen in cache."""
        frames, _, kps = weights.shape
        flat = jnp.moveaxis(uv, 1, 0).reshape(cams, frames * kps, 2)
        X, used = core(flat[..., 0], flat[..., 1], jnp.moveaxis(weights, 1, 0).reshape(cams, frames * kps),
                       P, K, dist)
        return X.T.reshape(frames, kps, 3), jnp.moveaxis(used.reshape(cams, frames, kps), 0, 1)

    fn = run_frames if frame_major else run
    if group == 1:
        return jax.jit(fn)

    def many(uv, weights, P, K, dist):
        """``group`` chunks in one call: one dispatch and one transfer instead of ``group``."""
        def split(x):
            return x.reshape(group, x.shape[0] // group, *x.shape[1:])

        X, used = jax.lax.map(lambda parts: fn(*parts, P, K, dist), (split(uv), split(weights)))
        return X.reshape(-1, *X.shape[2:]), used.reshape(-1, *used.shape[2:])

    return jax.jit(many)


def robust(uv, weights, P, K, dist, scales=CAUCHY_SCALES_PX, reject_px: float = REJECT_PX,
           dtype: str = "float64", chunk: int = CHUNK, iterations: int = 5, threads: int | None = None,
           group: int = GROUP):
    """The robust solver on distorted ``uv`` (N, C, 2) with ``weights`` (N, C) — or, frame-major, ``uv``
    (F, C, Kp, 2) with ``weights`` (F, C, Kp) (then points (F, Kp, 3), used (F, C, Kp), in chunks of
    ≈ ``chunk`` points, no host-side transposes). See the module docstring. ``dtype`` float32 moves half the
    bytes (its reprojections move by up to ≈ 0.01 px; no faster on the CPUs measured). ``threads``: chunks
    computed at once (default :func:`default_threads`); results do not depend on it."""
    import jax

    import mck.gimbal  # noqa: F401  (64-bit JAX before the first device_put, or the cameras go in as float32)

    uv = np.asarray(uv)
    weights = np.asarray(weights)
    frame_major = uv.ndim == 4
    n, cams = uv.shape[:2]
    step = max(1, chunk // uv.shape[2]) if frame_major else chunk
    span = step * group
    key = (cams, tuple(float(s) for s in scales), float(reject_px), str(dtype), int(iterations), frame_major)
    P, K, dist = (jax.device_put(np.asarray(a, dtype=np.float64)) for a in (P, K, dist))
    points = np.empty((n, *uv.shape[2:-1], 3))
    used = np.empty(weights.shape, dtype=bool)

    def solve(start: int, size: int) -> None:
        """Rows start … start + size (``size`` = one chunk or one group), the last chunk padded: one compiled shape."""
        stop = min(start + size, n)
        part_uv, part_w = uv[start:stop], weights[start:stop]
        if stop - start < size:
            pad = size - (stop - start)
            part_uv = np.concatenate([part_uv, np.full((pad, *uv.shape[1:]), np.nan, part_uv.dtype)])
            part_w = np.concatenate([part_w, np.zeros((pad, *weights.shape[1:]), part_w.dtype)])
        X, inlier = _compiled(*key, size // step)(part_uv, part_w, P, K, dist)
        points[start:stop], used[start:stop] = np.asarray(X)[: stop - start], np.asarray(inlier)[: stop - start]

    grouped = n // span * span
    tasks = [(start, span) for start in range(0, grouped, span)] + [(start, step) for start in range(grouped, n, step)]
    workers = min(threads or default_threads(), len(tasks))
    if workers <= 1:
        for task in tasks:
            solve(*task)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda task: solve(*task), tasks))
    return points, used
