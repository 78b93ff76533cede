"""Benchmark: CenterNet + HRNet video inference, the lab's per-frame loop against the mck steps.

Baseline (measured in the same run), like the lab's ``v0/segmentation.py`` / ``v0/detection.py`` (docs/algorithms.md §D.1,
docs/algorithms.md §D.2): ``cv2.VideoCapture`` reads a frame, channel 0, pre-process (subsample / zero-canvas crop, CLAHE), forward with
batch size 1, parse — one frame at a time. Optimized: ``mck.steps.centernet.run`` and ``mck.steps.hrnet.run``
(decoding in a background thread, batched CLAHE/crop, batched forward, vectorised parsing), with
``subpixel=False`` so that their outputs are the lab's.

Both HRNet paths read the baseline's ``centroid.npy``. Parity is reported twice: on the same frames (the batched
``mck.detection.infer`` functions applied to the frames ``cv2.VideoCapture`` decoded; must be ≤ 1e-4) and end to
end (the steps decode with PyAV, whose YUV→grey conversion can differ from OpenCV's BGR channel 0 by one grey level,
which may move an argmax).

The networks have random weights of ordinary magnitude (an untrained HRNet's heatmaps are flat and every argmax a
tie). CenterNet is the lab's size (c = 32); HRNet defaults to the demo's CPU size (c = 8, stem 16, crop 192),
because the lab's (c = 32, stem 64, crop 512) takes seconds per frame on 2 CPU cores — ``--lab-size`` selects it.

    .venv/bin/python -m benchmarks.bench_detection [--frames 200] [--lab-size] [--threads N] [--batch-sizes 32 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.ndimage
import torch

from mck.detection import ConvNet, HRNet, infer, preprocess
from mck.detection.lab_reference import lab_centroid, lab_keypoints
from mck.detection.random_init import randomize
from mck.steps import centernet as centernet_step
from mck.steps import hrnet as hrnet_step
from mck.video import iter_frames, write_video


def unit_heatmaps(model: HRNet, crop: int) -> HRNet:
    """Scale the final layer so that heatmaps have standard deviation ≈ 1 (round-off then ≈ 1e-6 absolute)."""
    with torch.no_grad():
        std = float(model(torch.rand(2, 1, crop, crop)).std())
        model.final_layer.weight /= std
        model.final_layer.bias /= std
    return model


def lab_heatmap(model: torch.nn.Module, crop_img: np.ndarray) -> np.ndarray:
    """Batch-1 forward of one CLAHE'd crop, as the lab's loop does it."""
    with torch.no_grad():
        return model(torch.from_numpy(crop_img.astype(np.float32) / 255.0)[None, None])[0].numpy()


def synthetic_frames(n: int, h: int, w: int, seed: int = 0):
    """A bright ellipse (the mouse) wandering over a noisy dark arena."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        frame = rng.integers(0, 50, (h, w)).astype(np.uint8)
        a = 2 * np.pi * i / max(n, 1)
        cx, cy = int(w / 2 + 0.3 * w * np.cos(a)), int(h / 2 + 0.3 * h * np.sin(2 * a))
        cv2.ellipse(frame, (cx, cy), (w // 10, h // 16), np.degrees(a), 0, 360, 210, -1)
        yield frame


# ---------------------------------------------------------------- the lab's per-frame loops

def lab_centernet(model: torch.nn.Module, video: str, keep_frames: list | None = None) -> np.ndarray:
    cap = cv2.VideoCapture(video)
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        grey = frame[:, :, 0]
        if keep_frames is not None:
            keep_frames.append(grey.copy())
        out.append(lab_centroid(model, grey))
    cap.release()
    return np.array(out, dtype=np.int64)


def lab_hrnet(model: torch.nn.Module, video: str, centroid_path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    centers = scipy.ndimage.median_filter(np.load(centroid_path), size=(11, 1)).astype(int)
    cap = cv2.VideoCapture(video)
    uvs, confs = [], []
    for center in centers:
        ok, frame = cap.read()
        if not ok:
            break
        uv, conf = lab_keypoints(model, frame[:, :, 0], center, size)
        uvs.append(uv)
        confs.append(conf)
    cap.release()
    return np.array(uvs, np.float32), np.array(confs, np.float32)


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--lab-size", action="store_true", help="HRNet c=32, stem 64, crop 512 (slow on CPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 8],
                        help="batch sizes of the mck steps (32: the config's default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both paths (0 = all cores)")
    args = parser.parse_args()
    c, stem, crop = (32, 64, 512) if args.lab_size else (8, 16, 192)
    threads = args.threads or infer.use_all_cores()
    torch.set_num_threads(threads)
    infer.use_all_cores = lambda: threads  # the steps call it; keep both paths on the same thread count

    tmp = Path(tempfile.mkdtemp(prefix="bench_detection_"))
    video = str(tmp / "20240422_J04301.top.mp4")
    write_video(video, synthetic_frames(args.frames, args.height, args.width), fps=30)
    cnet = randomize(ConvNet(32), 1)
    hnet = unit_heatmaps(randomize(HRNet(c=c, stem_width=stem), 2), crop)
    torch.save(cnet.state_dict(), tmp / "centernet.pth")
    torch.save(hnet.state_dict(), tmp / "hrnet_top.pth")
    T = args.frames
    print(f"detection: {T} frames {args.width}×{args.height}, {threads} torch thread(s), CPU "
          f"({os.cpu_count()} cores); CenterNet c=32 (lab size); HRNet c={c}, stem {stem}, "
          f"crop {crop}" + (" (lab size)" if args.lab_size else " (demo size; the lab's is c=32, stem 64, crop 512)"))

    frames_cv: list = []
    t0 = time.perf_counter()
    base_c = lab_centernet(cnet, video, keep_frames=frames_cv)
    tb_c = time.perf_counter() - t0
    centroid_path = str(tmp / "lab.centroid.npy")
    np.save(centroid_path, base_c)
    t0 = time.perf_counter()
    base_uv, base_conf = lab_hrnet(hnet, video, centroid_path, crop)
    tb_h = time.perf_counter() - t0

    timings = {}
    for bs in args.batch_sizes:
        t0 = time.perf_counter()
        centernet_step.run(video, str(tmp / "centernet.pth"), str(tmp / f"mck{bs}.centroid.npy"), batch_size=bs,
                           subpixel=False, device="cpu")
        to_c = time.perf_counter() - t0
        t0 = time.perf_counter()
        hrnet_step.run(video, centroid_path, str(tmp / "hrnet_top.pth"), str(tmp / f"mck{bs}.keypoints.h5"),
                       batch_size=bs, crop_size=crop, subpixel=False, device="cpu")
        timings[bs] = (to_c, time.perf_counter() - t0)
    bs = args.batch_sizes[0]
    mck_c = np.load(tmp / f"mck{bs}.centroid.npy")
    with h5py.File(tmp / f"mck{bs}.keypoints.h5", "r") as f:
        mck_uv, mck_conf = f["uv"][()], f["conf"][()]

    # parity on identical frames (the ones cv2 decoded), batched like the steps
    frames_cv = np.stack(frames_cv)
    same_c = np.concatenate([infer.predict_centroids(cnet, frames_cv[s:s + bs]) for s in range(0, T, bs)])
    centers = infer.smooth_centroids(base_c)
    parts = [infer.predict_keypoints(hnet, frames_cv[s:s + bs], centers[s:s + bs], crop) for s in range(0, T, bs)]
    same_uv, same_conf = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    grey_pyav = np.stack(list(iter_frames(video)))
    crops = preprocess.clahe(preprocess.crop(frames_cv[:bs], centers[:bs], crop))
    heat_batched = infer.forward(hnet, crops)
    heat_single = np.stack([lab_heatmap(hnet, im) for im in crops])
    flips = np.argwhere(np.any(same_uv != base_uv, axis=-1))
    gaps = []
    for f, k in flips:  # heatmap values of the lab's and mck's argmax cells in the lab's own (batch-1) heatmap
        heat = lab_heatmap(hnet, preprocess.clahe(preprocess.crop(frames_cv[f:f + 1], centers[f:f + 1], crop))[0])[k]
        ul, vl = ((base_uv[f, k] - centers[f] + crop // 2) // 2).astype(int)
        um, vm = ((same_uv[f, k] - centers[f] + crop // 2) // 2).astype(int)
        gaps.append(abs(heat[vl, ul] - heat[vm, um]))

    def line(name, tb, to):
        return (f"  {name:9s} lab loop {T / tb:7.2f} frames/s   mck step {T / to:7.2f} frames/s   "
                f"speed-up ×{tb / to:.2f}")

    for b, (to_c, to_h) in timings.items():
        print(f" mck batch size {b}:")
        print(line("CenterNet", tb_c, to_c))
        print(line("HRNet", tb_h, to_h))
        print(line("both", tb_c + tb_h, to_c + to_h))
    print(f"  parity on the same frames (subpixel=False): max |Δ centroid| = {np.abs(same_c - base_c).max()} px; "
          f"HRNet heatmaps batch {bs} vs batch 1: max |Δ| = {np.abs(heat_batched - heat_single).max():.2e} "
          f"(heatmap std {heat_single.std():.2f}); max |Δ conf| = {np.abs(same_conf - base_conf).max():.2e}; "
          f"uv identical in {1 - len(flips) / base_uv[..., 0].size:.3%} of {base_uv[..., 0].size} keypoints"
          + (f", the {len(flips)} others are round-off ties of the random net (the two cells' values differ by "
             f"≤ {max(gaps):.1e} in the lab's own heatmap)" if len(flips) else ""))
    d_uv = np.abs(mck_uv - base_uv)
    print(f"  end to end (PyAV vs cv2 decoding; {np.mean(grey_pyav != frames_cv):.1%} of pixels differ, max "
          f"{np.abs(grey_pyav.astype(int) - frames_cv).max()} grey level): max |Δ centroid| = "
          f"{np.abs(mck_c - base_c).max()} px, max |Δ uv| = {d_uv.max():.2e} px "
          f"({np.mean(d_uv.max(-1) > 0):.2%} of keypoints differ), max |Δ conf| = "
          f"{np.abs(mck_conf - base_conf).max():.2e}")
    best = max(timings, key=lambda b: -sum(timings[b]))
    ratio = (tb_c + tb_h) / sum(timings[best])
    print(f"  target ×1.5 over the lab loop on CPU: {'met' if ratio >= 1.5 else 'NOT met'} "
          f"(best: batch size {best}, ×{ratio:.2f})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
