"""Benchmark: the synthetic renderer and ``python -m mck synth``.

Baseline (measured in the same run): the previous renderer, kept verbatim below (``_Previous``) — per primitive
(h, w, 3) float64 ray arrays over a box padded by 3 % of the image, and the chessboard ray-cast over the whole
image at 2×2 samples per pixel. The current one (``mck.synth.render``) casts only inside the exact silhouette box
(dual conic of each ellipsoid, projected outline of the board), evaluates the ellipsoid intersection as scalar
quadratic forms in float32, and computes every primitive's box in one vectorized call. Both render the same
frames of the default rig (640×512); the images are compared (max abs difference, grey levels).

Then the whole writer: ``write_project`` on a reduced spec (per-video timings: render + noise + H.264), and
optionally the full default project (``--full``: ``python -m mck synth`` defaults, 2 workers).

    .venv/bin/python benchmarks/bench_synth.py [--frames 60] [--full]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from mck.geometry.camera import rodrigues, undistort_points
from mck.synth import animal, board, render
from mck.synth.rig import make_rig


class _Previous:
    """The renderer before vectorization (verbatim but for names), the baseline."""

    class CameraRays:
        def __init__(self, K, dist, extrinsic, size):
            width, height = size
            self.K, self.dist, self.size = K, dist, size
            self.R = rodrigues(extrinsic[:3])
            self.t = extrinsic[3:]
            u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
            ideal = undistort_points(np.stack([u, v], -1), K, dist, iterations=20)
            x = (ideal[..., 0] - K[0, 2]) / K[0, 0]
            y = (ideal[..., 1] - K[1, 2]) / K[1, 1]
            self.rays = np.stack([x, y, np.ones_like(x)], -1)

        def to_camera(self, points):
            return points @ self.R.T + self.t

    @staticmethod
    def _pixel_box(cam, center_cam, extent, width, height, margin):
        corners = center_cam + extent * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1)
                                                  for sz in (-1, 1)])
        corners[:, 2] = np.maximum(corners[:, 2], 1.0)
        xy = corners[:, :2] / corners[:, 2:]
        uv = xy * np.array([cam.K[0, 0], cam.K[1, 1]]) + cam.K[:2, 2]
        pad = margin + 0.03 * max(width, height)
        u0, v0 = np.floor(uv.min(0) - pad).astype(int)
        u1, v1 = np.ceil(uv.max(0) + pad).astype(int)
        u0, v0 = max(u0, 0), max(v0, 0)
        u1, v1 = min(u1, width), min(v1, height)
        if u0 >= u1 or v0 >= v1:
            return None
        return u0, u1, v0, v1

    @classmethod
    def render_ellipsoids(cls, cam, centers, axes, albedo, background, margin=3):
        height, width = background.shape
        image = background.copy()
        depth = np.full((height, width), np.inf)
        c_cam = cam.to_camera(centers)
        a_cam = axes @ cam.R.T
        extent = np.linalg.norm(a_cam, axis=1).max(1)
        for p in range(len(centers)):
            if c_cam[p, 2] - extent[p] <= 1.0:
                continue
            box = cls._pixel_box(cam, c_cam[p], extent[p], width, height, margin)
            if box is None:
                continue
            u0, u1, v0, v1 = box
            rays = cam.rays[v0:v1, u0:u1]
            inv = np.linalg.inv(a_cam[p].T)
            d = rays @ inv.T
            c = inv @ c_cam[p]
            a = np.sum(d * d, -1)
            b = d @ c
            disc = b * b - a * (c @ c - 1.0)
            hit = disc > 0
            t = np.where(hit, (b - np.sqrt(np.where(hit, disc, 0))) / a, np.inf)
            closer = hit & (t > 0) & (t < depth[v0:v1, u0:u1])
            if not closer.any():
                continue
            y = np.where(closer[..., None], t[..., None] * d - c, 0.0)
            normal = y @ inv
            normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
            view = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
            shade = 0.45 + 0.55 * np.abs(np.sum(normal * view, -1))
            region = image[v0:v1, u0:u1]
            region[closer] = albedo[p] * shade[closer]
            depth[v0:v1, u0:u1][closer] = t[closer]
        return image, depth

    @staticmethod
    def render_plane(cam, origin, ex, ey, texture, background, supersample=3):
        height, width = background.shape
        o = cam.to_camera(origin)
        ax = ex @ cam.R.T
        ay = ey @ cam.R.T
        normal = np.cross(ax, ay)
        image = np.zeros((height, width))
        count = np.zeros((height, width))
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        inv_f = np.array([1.0 / cam.K[0, 0], 1.0 / cam.K[1, 1]])
        for du in offsets:
            for dv in offsets:
                rays = cam.rays.copy()
                rays[..., 0] += du * inv_f[0]
                rays[..., 1] += dv * inv_f[1]
                denom = rays @ normal
                with np.errstate(divide="ignore", invalid="ignore"):
                    s = (o @ normal) / denom
                point = s[..., None] * rays - o
                x = point @ ax / (ax @ ax)
                y = point @ ay / (ay @ ay)
                value = texture(x, y)
                valid = np.isfinite(value) & (s > 0)
                image += np.where(valid, value, background)
                count += 1
        return image / count


def _time(fn, n):
    t0 = time.perf_counter()
    out = [fn(i) for i in range(n)]
    return (time.perf_counter() - t0) / n, out


def bench_renderers(frames: int) -> None:
    rig = make_rig((640, 512), seed=0)
    body = animal.make_body(animal.trajectory(frames, np.random.default_rng(0)))
    rvecs, tvecs = board.board_poses(frames, np.random.default_rng(1), rig=rig)
    rots = rodrigues(rvecs)
    background = np.random.default_rng(2).uniform(20, 90, (512, 640)).astype(np.float32)
    extent = board.paper_extent()
    print(f"renderer, default rig 640x512, {frames} frames per camera, cameras side1 and bottom")
    print(f"{'':28s}{'previous s/frame':>18s}{'current s/frame':>18s}{'speed-up':>10s}{'max |diff|':>12s}")
    for c in (1, 5):
        K, dist = rig.intrinsics[c]
        new = render.CameraRays(K, dist, rig.extrinsics[c], rig.size)
        old = _Previous.CameraRays(K, dist, rig.extrinsics[c], rig.size)
        bg64 = background.astype(float)
        t_old, img_old = _time(lambda t: _Previous.render_ellipsoids(old, body.centers[t], body.axes[t], body.albedo,
                                                                     bg64)[0], frames)
        t_new, img_new = _time(lambda t: render.render_ellipsoids(new, body.centers[t], body.axes[t], body.albedo,
                                                                  background)[0], frames)
        diff = max(np.abs(a - b).max() for a, b in zip(img_old, img_new))
        print(f"{rig.names[c] + ' animal (ellipsoids)':28s}{t_old:18.4f}{t_new:18.4f}{t_old / t_new:9.1f}x"
              f"{diff:12.3f}")
        t_old, img_old = _time(lambda t: _Previous.render_plane(old, tvecs[t], rots[t][:, 0], rots[t][:, 1],
                                                                board.texture, bg64, 2), frames)
        t_new, img_new = _time(lambda t: render.render_plane(new, tvecs[t], rots[t][:, 0], rots[t][:, 1],
                                                             board.texture, background, 2, extent), frames)
        diffs = np.array([np.abs(a - b).max() for a, b in zip(img_old, img_new)])
        differing = np.mean([(np.abs(a - b) > 1).sum() for a, b in zip(img_old, img_new)])
        print(f"{rig.names[c] + ' board (plane, 2x2 AA)':28s}{t_old:18.4f}{t_new:18.4f}{t_old / t_new:9.1f}x"
              f"{diffs.max():12.3f}" + (f"   ({differing:.2f} px/frame differ by > 1 grey level)" if differing
                                        else ""))


def bench_writer(full: bool) -> None:
    from mck.synth.writer import Spec, write_project

    with tempfile.TemporaryDirectory() as tmp:
        spec = Spec(out=f"{tmp}/small", sessions=1, frames=120, calibration_frames=60, size=(640, 512),
                    labels_per_video=5, workers=1)
        t0 = time.perf_counter()
        write_project(spec, progress=False)
        dt = time.perf_counter() - t0
        n = 6 * (spec.frames + spec.calibration_frames)
        print(f"\nwrite_project 640x512, 1 worker, {n} frames (6 cameras × ({spec.frames} animal + "
              f"{spec.calibration_frames} board)): {dt:.1f} s = {dt / n * 1000:.1f} ms/frame "
              f"(render, noise, H.264, ground truth, labels)")
        if full:
            import subprocess
            import sys

            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mck", "synth", f"{tmp}/full", "--quiet"], check=True)
            print(f"python -m mck synth (defaults: 640x512, 2 sessions × 600 frames, 360 calibration frames, "
                  f"2 workers): {time.perf_counter() - t0:.1f} s (was ~180 s with the previous renderer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--full", action="store_true", help="also time the full default project")
    args = parser.parse_args()
    bench_renderers(args.frames)
    bench_writer(args.full)


if __name__ == "__main__":
    main()
