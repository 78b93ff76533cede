"""Training of CenterNet (docs/algorithms.md §D.4) and HRNet (§D.5) with the §E QUIRK 11 fixes.

Differences from the lab's notebooks, on purpose: the model is in ``train()`` mode (BatchNorm learns); CLAHE is
applied at the same stage as at inference (on the half-res image for CenterNet, on the crop for HRNet); missing
HRNet labels are masked out of the loss. Augmentation (numpy/OpenCV, no albumentations): random affine
(p 0.8, scale ±0.2, rotation ±25°, shift ±0.0625), Gaussian noise (p 0.25, variance 10–50), brightness/contrast
±0.1 (p 0.5). The validation split is the lab's (docs/algorithms.md §D.3); its median pixel error is measured every epoch.
A checkpoint (model, optimiser, RNG states, history) is written after every epoch and training resumes from it;
the weights with the best validation error are returned. Everything is seeded.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from mck.detection import infer, postprocess, preprocess
from mck.detection.centernet import ConvNet
from mck.detection.hrnet import HRNet
from mck.detection.labels import LabelledImage, split_train_test
from mck.runtime import Preempted, stop_requested

HRNET_SIGMA_DIVISOR = 100.0    # exp(-d²/100) in crop px (docs/algorithms.md §D.5)
CENTERNET_DIVISOR = 1600.0     # exp(-d²/1600) in half-res px (docs/algorithms.md §D.4)


@dataclass
class TrainResult:
    state_dict: dict
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_median_px: float = math.inf
    seconds: float = 0.0


# ---------------------------------------------------------------- augmentation (numpy / OpenCV)

def random_affine(rng: np.random.RandomState, center: tuple[float, float], out_size: tuple[int, int],
                  augment: bool, in_scale: float = 1.0, shift_size: tuple[float, float] | None = None) -> np.ndarray:
    """2×3 matrix mapping source px to output px: ``center`` → output centre, with a random similarity.

    The random shift is ±6.25 % of ``shift_size`` (default ``out_size``) per axis.
    """
    ow, oh = out_size
    angle, scale, sx, sy = 0.0, 1.0, 0.0, 0.0
    if augment and rng.uniform() < 0.8:
        angle = rng.uniform(-25, 25)
        scale = 1.0 + rng.uniform(-0.2, 0.2)
        sx, sy = rng.uniform(-0.0625, 0.0625, size=2) * np.array(shift_size or (ow, oh), dtype=float)
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, scale * in_scale)
    m[:, 2] += np.array([ow / 2 + sx - center[0], oh / 2 + sy - center[1]])
    return m


def photometric(rng: np.random.RandomState, img: np.ndarray, augment: bool) -> np.ndarray:
    """Gaussian noise (p 0.25) and brightness/contrast (p 0.5) on a uint8 image."""
    if not augment:
        return img
    x = img.astype(np.float32)
    if rng.uniform() < 0.25:
        x += rng.normal(0, math.sqrt(rng.uniform(10, 50)), size=x.shape).astype(np.float32)
    if rng.uniform() < 0.5:
        alpha = 1.0 + rng.uniform(-0.1, 0.1)
        beta = rng.uniform(-0.1, 0.1) * 255
        x = x * alpha + beta
    return np.clip(x, 0, 255).astype(np.uint8)


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


# ---------------------------------------------------------------- samples

def _load_grey(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return np.ascontiguousarray(img[:, :, 0])  # channel 0 (frames are monochrome)


def hrnet_sample(rng, img: np.ndarray, kp: np.ndarray, crop_size: int, augment: bool,
                 center: np.ndarray | None = None):
    """(image uint8 (crop, crop) after CLAHE, keypoints in crop px (K, 2) NaN = missing).

    As the lab's (docs/algorithms.md §D.5) the random shift is ±6.25 % of the square window ``min(H, W) − 2`` the lab augments before
    its central crop — not of the crop — so the net sees the animal as far off-centre as the CenterNet centroid
    (median of keypoints, ±1–2 cells) puts it at inference.
    """
    if center is None:
        center = np.nanmean(kp, axis=0)
        if augment:
            center = center + rng.normal(0, 1, size=2)
        center = np.trunc(center)
    window = float(min(img.shape[:2]) - 2)
    m = random_affine(rng, center, (crop_size, crop_size), augment, shift_size=(window, window))
    crop = cv2.warpAffine(img, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    crop = preprocess.clahe(photometric(rng, crop, augment)[None])[0]
    return crop, transform_points(m, kp)


def hrnet_targets(kp: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (B, K, crop/2, crop/2) on grid points (2i, 2j) and a mask (B, K) (0 for missing labels)."""
    h = crop_size // 2
    grid = np.arange(h, dtype=np.float32) * 2
    u, v = kp[..., 0].astype(np.float32), kp[..., 1].astype(np.float32)
    mask = np.isfinite(u) & np.isfinite(v)
    u, v = np.nan_to_num(u, nan=-1e4), np.nan_to_num(v, nan=-1e4)
    gy = np.exp(-(grid[None, None, :] - v[..., None]) ** 2 / HRNET_SIGMA_DIVISOR)
    gx = np.exp(-(grid[None, None, :] - u[..., None]) ** 2 / HRNET_SIGMA_DIVISOR)
    return gy[..., :, None] * gx[..., None, :], mask.astype(np.float32)


def centernet_sample(rng, img: np.ndarray, kp: np.ndarray, augment: bool):
    """Half-res CLAHE image (h, w) and the centroid (2,) in half-res px (nanmedian of augmented keypoints)."""
    half = preprocess.subsample(img[None])[0]
    h, w = half.shape
    kp = kp / 2.0
    if augment:
        m = random_affine(rng, (w / 2, h / 2), (w, h), True)
        half = cv2.warpAffine(half, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        kp = transform_points(m, kp)
    half = preprocess.clahe(photometric(rng, half, augment)[None])[0]
    return half, np.nanmedian(kp, axis=0)


def centernet_targets(centroids: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(B, 1, h, w) targets on grid points (16 i, 16 j) half-res: exp(−d²/1600)."""
    gy = np.arange(out_hw[0], dtype=np.float32) * 16
    gx = np.arange(out_hw[1], dtype=np.float32) * 16
    c = centroids.astype(np.float32)
    t = np.exp(-((gy[None, :, None] - c[:, 1, None, None]) ** 2 + (gx[None, None, :] - c[:, 0, None, None]) ** 2)
               / CENTERNET_DIVISOR)
    return t[:, None]


# ---------------------------------------------------------------- loop

def _rng_state(rng: np.random.RandomState) -> dict:
    return {"np": rng.get_state(), "torch": torch.get_rng_state()}


def _fit(kind: str, model: nn.Module, items: list[LabelledImage], *, epochs: int, batch_size: int, lr: float,
         seed: int, max_minutes: float | None, checkpoint: str | os.PathLike | None, crop_size: int,
         device: torch.device, log: logging.Logger | None, val_fraction: float = 0.1) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    train, test = split_train_test(items, val_fraction, seed=0)
    if not train:
        raise ValueError("no training images")
    images = {it.path: _load_grey(it.path) for it in items}
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    result = TrainResult(state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    start_epoch = 0
    ckpt = Path(checkpoint) if checkpoint else None
    state = None
    if ckpt is not None and ckpt.exists():
        try:   # our own checkpoint (optimizer and RNG states need full unpickling); a damaged one: start over
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            state["model"], state["optimizer"], state["rng"], state["result"], state["epoch"]  # noqa: B018
        except Exception as exc:  # noqa: BLE001
            if log:
                log.warning("%s: ignoring unreadable checkpoint %s (%s); training from the start", kind, ckpt.name,
                            type(exc).__name__)
            state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.set_state(state["rng"]["np"])
        torch.set_rng_state(state["rng"]["torch"])
        result = state["result"]
        start_epoch = state["epoch"] + 1
        if log:
            log.info("%s: resuming training at epoch %d", kind, start_epoch)

    def batch_tensors(batch: list[LabelledImage], augment: bool):
        if kind == "hrnet":
            xs, kps = zip(*(hrnet_sample(rng, images[it.path], it.keypoints, crop_size, augment) for it in batch))
            target, mask = hrnet_targets(np.stack(kps), crop_size)
            return np.stack(xs), torch.from_numpy(target), torch.from_numpy(mask), np.stack(kps)
        xs, cs = zip(*(centernet_sample(rng, images[it.path], it.keypoints, augment) for it in batch))
        xs = np.stack(xs)
        out_hw = (xs.shape[1] // 16, xs.shape[2] // 16)
        return xs, torch.from_numpy(centernet_targets(np.stack(cs), out_hw)), None, np.stack(cs)

    def loss_fn(out, target, mask):
        err = (out - target) ** 2
        if mask is None:
            return err.mean()
        per_joint = err.mean(dim=(2, 3)) * mask
        return per_joint.sum() / mask.sum().clamp(min=1.0)

    def validate() -> float:
        model.eval()
        errors = []
        vrng = np.random.RandomState(1)
        for s in range(0, len(test), batch_size):
            batch = test[s:s + batch_size]
            if kind == "hrnet":
                xs, kps = zip(*(hrnet_sample(vrng, images[it.path], it.keypoints, crop_size, False) for it in batch))
                heat = infer.forward(model, np.stack(xs))
                uv, _ = postprocess.parse_hrnet(heat, subpixel=True)
                d = np.linalg.norm(uv - np.stack(kps), axis=-1)
                errors.extend(d[np.isfinite(d)].tolist())
            else:
                frames = np.stack([images[it.path] for it in batch])
                pred = infer.predict_centroids(model, frames, subpixel=True)
                truth = np.stack([np.nanmedian(it.keypoints, axis=0) for it in batch])
                errors.extend(np.linalg.norm(pred - truth, axis=-1).tolist())
        model.train()
        return float(np.median(errors)) if errors else float("nan")

    deadline = started + 60 * max_minutes if max_minutes else None
    model.train()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(train))
        losses = []
        for s in range(0, len(order), batch_size):
            batch = [train[i] for i in order[s:s + batch_size]]
            if len(batch) < 2 and len(order) > 1:
                continue  # BatchNorm in train mode needs > 1 sample
            xs, target, mask, _ = batch_tensors(batch, augment=True)
            x = torch.from_numpy(preprocess.to_tensor_input(xs)).to(device)
            out = model(x)
            loss = loss_fn(out, target.to(device), None if mask is None else mask.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        median_px = validate() if test else float("nan")
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                 "val_median_px": median_px, "seconds": round(time.perf_counter() - t0, 2)}
        result.history.append(entry)
        if not math.isfinite(result.best_median_px) or (math.isfinite(median_px) and median_px <= result.best_median_px) \
                or not test:
            result.best_median_px, result.best_epoch = median_px, epoch
            result.state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if log:
            log.info("%s epoch %d: loss %.3g, val median %.2f px (%.1fs)", kind, epoch, entry["train_loss"],
                     median_px, entry["seconds"])
        if ckpt is not None:
            tmp = ckpt.with_name(ckpt.name + ".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": _rng_state(rng),
                        "result": result, "epoch": epoch}, tmp)
            os.replace(tmp, ckpt)
        if stop_requested():  # SLURM's SIGUSR2/SIGTERM before the time limit: the checkpoint above resumes here
            raise Preempted(f"{kind}: stopped after epoch {epoch} of {epochs}"
                            + (f"; checkpoint {ckpt.name}" if ckpt is not None else ""))
        if deadline and time.perf_counter() > deadline:
            if log:
                log.info("%s: time budget of %.1f min reached after epoch %d", kind, max_minutes, epoch)
            break
    result.seconds = time.perf_counter() - started
    return result


def train_hrnet(items: list[LabelledImage], *, width: int = 32, stem_width: int = 64, joints: int = 15,
                crop_size: int = 512,
                epochs: int = 250, batch_size: int = 8, lr: float = 2.5e-4, seed: int = 0,
                max_minutes: float | None = None, checkpoint: str | os.PathLike | None = None,
                device: torch.device | str | None = None, init: dict | None = None,
                log: logging.Logger | None = None) -> TrainResult:
    """Train an HRNet(width, joints) on labelled full-res frames; returns the best-validation state dict."""
    device = torch.device(device) if device else infer_device()
    torch.manual_seed(seed)  # the initial weights belong to the seeded run
    model = HRNet(c=width, nof_joints=joints, stem_width=stem_width)
    if init is not None:
        model.load_state_dict(init, strict=True)
    return _fit("hrnet", model, items, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                max_minutes=max_minutes, checkpoint=checkpoint, crop_size=crop_size, device=device, log=log)


def train_centernet(items: list[LabelledImage], *, initial_channels: int = 32, epochs: int = 300,
                    batch_size: int = 8, lr: float = 2.5e-4, seed: int = 0, max_minutes: float | None = None,
                    checkpoint: str | os.PathLike | None = None, device: torch.device | str | None = None,
                    init: dict | None = None, log: logging.Logger | None = None) -> TrainResult:
    """Train a CenterNet ConvNet(initial_channels) on labelled full-res frames."""
    device = torch.device(device) if device else infer_device()
    torch.manual_seed(seed)  # the initial weights belong to the seeded run
    model = ConvNet(initial_channels=initial_channels)
    if init is not None:
        model.load_state_dict(init, strict=True)
    return _fit("centernet", model, items, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                max_minutes=max_minutes, checkpoint=checkpoint, crop_size=0, device=device, log=log)


def infer_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
