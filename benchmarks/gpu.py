"""One GPU benchmark that measures everything a session's cost depends on, and prints one table
(``make bench-gpu``; under 5 minutes on one GPU):

* CenterNet (c = 32) frames/s: the lab's loop (one frame at a time, batch 1, float32) vs mck's batched fp16 path
  (:func:`mck.detection.infer.predict_centroids`, autocast on CUDA), on 1280×1024 frames;
* HRNet at the lab's size (c = 32, stem 64, 512 × 512 crops) frames/s, the same two ways;
* video decode frames/s (PyAV through :func:`mck.video.iter_frames`, 1280×1024 H.264), which bounds both;
* GIMBAL s/iteration at 216,000 frames (a two-hour session) in float32 and float64, in a subprocess each
  (:mod:`benchmarks.bench_gimbal_scale`), with the host's peak RSS.

Random weights of ordinary magnitude (speed only). Without a GPU it still runs, in ``--smoke`` mode: small networks
(c = 8, crops of 192), 640×512 frames, a few frames, GIMBAL at 1,000 frames — a check that the script works, not a
measurement.

    python -m benchmarks.gpu [--smoke] [--frames 200] [--gimbal-frames 216000] [--gimbal-iters 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _time(fn, warm) -> float:
    """Seconds of one ``fn()`` after one ``warm()`` (cuDNN autotune, allocations)."""
    import torch

    warm()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def detection_rows(frames: int, width: int, height: int, c: int, stem: int, crop: int, batch: int) -> list[tuple]:
    import torch

    from benchmarks.bench_detection import synthetic_frames, unit_heatmaps
    from mck.detection import ConvNet, HRNet, infer
    from mck.detection.lab_reference import lab_centroid, lab_keypoints
    from mck.detection.random_init import randomize

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        infer.use_all_cores()
    video = np.stack(list(synthetic_frames(frames, height, width)))
    cnet = infer.prepare(randomize(ConvNet(32), 1), device)
    hnet = infer.prepare(unit_heatmaps(randomize(HRNet(c=c, stem_width=stem), 2), crop), device)
    lab_cnet = randomize(ConvNet(32), 1).to(device).eval()
    lab_hnet = hnet.to(memory_format=torch.contiguous_format)
    centers = np.tile([width // 2, height // 2], (frames, 1))

    def on_device(model):   # the lab's reference functions build CPU tensors; move their input like the lab did
        class Wrapped(torch.nn.Module):
            def forward(self, x):
                return model(x.to(device)).cpu()
        return Wrapped()

    lab_c = _time(lambda: [lab_centroid(on_device(lab_cnet), f) for f in video],
                  lambda: lab_centroid(on_device(lab_cnet), video[0]))
    mck_c = _time(lambda: [infer.predict_centroids(cnet, video[s:s + batch]) for s in range(0, frames, batch)],
                  lambda: infer.predict_centroids(cnet, video[:batch]))
    lab_h = _time(lambda: [lab_keypoints(on_device(lab_hnet), f, ctr, crop) for f, ctr in zip(video, centers)],
                  lambda: lab_keypoints(on_device(lab_hnet), video[0], centers[0], crop))
    hnet = infer.prepare(hnet, device)
    mck_h = _time(lambda: [infer.predict_keypoints(hnet, video[s:s + batch], centers[s:s + batch], crop)
                           for s in range(0, frames, batch)],
                  lambda: infer.predict_keypoints(hnet, video[:batch], centers[:batch], crop))
    precision = "fp16 autocast" if device.type == "cuda" else "fp32 (no GPU)"
    return [(f"CenterNet c=32, {width}×{height}", "frames/s", frames / lab_c, frames / mck_c,
             f"lab: batch 1 fp32; mck: batch {batch} {precision}"),
            (f"HRNet c={c} stem {stem}, crop {crop}", "frames/s", frames / lab_h, frames / mck_h,
             f"lab: batch 1 fp32; mck: batch {batch} {precision}")]


def decode_row(frames: int, width: int, height: int) -> tuple:
    from benchmarks.bench_detection import synthetic_frames
    from mck.video import iter_frames, write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.top.mp4")
        write_video(path, synthetic_frames(frames, height, width), fps=30)
        t0 = time.perf_counter()
        n = sum(1 for _ in iter_frames(path))
        seconds = time.perf_counter() - t0
    return (f"video decode {width}×{height} (PyAV)", "frames/s", None, n / seconds, "CPU, background thread")


def gimbal_rows(frames: int, iters: int) -> list[tuple]:
    from benchmarks.bench_gimbal_scale import run_sizes

    rows = []
    for dtype in ("float32", "float64"):
        r = run_sizes([frames], [iters], dtype)[0]
        rows.append((f"GIMBAL {frames} frames × 6 × 14, 50 states, {dtype}", "s/iteration", None, r["s_per_iter"],
                     f"{r['device']}; compile {r['compile_s']:.0f} s; host peak RSS {r['peak_rss_mb']:.0f} MB; "
                     f"5000 it ≈ {r['s_per_iter'] * 5000 / 3600:.2f} h"))
    return rows


def device_name() -> str:
    import jax
    import torch

    torch_dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return f"torch: {torch_dev}; jax: {jax.default_backend()} ({jax.devices()[0].device_kind})"


def format_table(rows: list[tuple]) -> str:
    header = ("measurement", "unit", "lab loop", "mck", "×", "notes")
    lines = [header]
    for name, unit, lab, ours, note in rows:
        ratio = "" if lab is None else (f"{ours / lab:.1f}" if unit.endswith("/s") else f"{lab / ours:.1f}")
        lines.append((name, unit, "" if lab is None else f"{lab:.3g}", f"{ours:.3g}", ratio, note))
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="small sizes: checks the script (runs on CPU)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--gimbal-frames", type=int, default=216_000)
    ap.add_argument("--gimbal-iters", type=int, default=20)
    args = ap.parse_args(argv)
    if args.smoke:
        size, net, frames, gframes, giters, batch = (640, 512), (8, 16, 192), 4, 1000, 1, 4
    else:
        size, net, frames, gframes, giters, batch = ((1280, 1024), (32, 64, 512), args.frames, args.gimbal_frames,
                                                    args.gimbal_iters, args.batch)
    t0 = time.perf_counter()
    print(f"mck GPU benchmark{' (smoke: small sizes, not a measurement)' if args.smoke else ''} — {device_name()}")
    rows = detection_rows(frames, *size, *net, batch)
    rows.append(decode_row(max(frames, 30), *size))
    rows += gimbal_rows(gframes, giters)
    print(format_table(rows))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
