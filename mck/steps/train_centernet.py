"""Step ``train_centernet`` (project level): CenterNet on the lab-format labels → ``weights/centernet.pth``.

Writes a bare state dict (loads with ``mck.detection.load_centernet`` like the lab's file). Per-epoch checkpoint
``centernet.pth.train_checkpoint.pt`` beside it; a re-run after a crash resumes there.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from mck.detection import infer
from mck.detection.labels import read_labels
from mck.detection.train import infer_device, train_centernet
from mck.errors import InputError
from mck.io import atomic_path


def run(labels_dir: str, output_path: str, item: str = "", initial_channels: int = 32, epochs: int = 300,
        batch_size: int = 8, lr: float = 2.5e-4, seed: int = 0, max_minutes: float | None = None,
        device: str | None = None, log: logging.Logger | None = None) -> dict:
    """Train CenterNet on every labelled image; returns epochs run, val median px error, seconds, device."""
    items = [it for it in read_labels(labels_dir) if (it.keypoints == it.keypoints).any()]
    if len(items) < 2:
        raise InputError(f"need at least 2 labelled images, found {len(items)}", item=item, path=labels_dir)
    threads = infer.use_all_cores()
    ckpt = Path(str(output_path) + ".train_checkpoint.pt")
    ckpt.parent.mkdir(parents=True, exist_ok=True)  # weights/ may not exist yet: the checkpoint is written per epoch
    result = train_centernet(items, initial_channels=initial_channels, epochs=epochs, batch_size=batch_size, lr=lr,
                             seed=int(seed), max_minutes=max_minutes, checkpoint=ckpt, device=device, log=log)
    with atomic_path(output_path) as tmp:
        torch.save(result.state_dict, tmp)
    ckpt.unlink(missing_ok=True)
    last = result.history[-1] if result.history else {}
    return {"images": len(items), "epochs": len(result.history), "best_epoch": result.best_epoch,
            "val_median_px": result.best_median_px, "train_loss": last.get("train_loss"),
            "seconds": round(result.seconds, 1), "threads": threads,
            "device": str(torch.device(device) if device else infer_device())}
