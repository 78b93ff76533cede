"""Step ``train_hrnet`` (project level): one HRNet per camera view → ``weights/hrnet_{top,side,bottom}.pth``.

``output_path`` is ``…/hrnet_top.pth``; ``hrnet_side.pth`` and ``hrnet_bottom.pth`` are written beside it.
``views`` maps camera → view (``{top: top, side1: side, …, bottom: bottom}``); a view's training images are those
whose camera maps to it. Bare state dicts (load with ``mck.detection.load_hrnet``); per-view per-epoch checkpoints
``hrnet_{view}.pth.train_checkpoint.pt``; views already written are skipped on a re-run.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from mck.detection import infer
from mck.detection.labels import read_labels
from mck.detection.load import load_hrnet
from mck.detection.train import infer_device, train_hrnet
from mck.errors import InputError
from mck.io import atomic_path

VIEWS = ("side", "bottom", "top")  # top last: its file is the step's "done" marker


def run(labels_dir: str, views: dict, output_path: str, item: str = "", width: int = 32, stem_width: int = 64,
        crop_size: int = 512,
        epochs: int = 250, batch_size: int = 8, lr: float = 2.5e-4, seed: int = 0, transfer: bool = False,
        max_minutes: float | None = None, device: str | None = None, log: logging.Logger | None = None) -> dict:
    """Train the three view models; ``max_minutes`` is the budget per view. Returns per-view metrics.

    ``transfer``: start ``bottom`` from the trained ``side`` weights and ``top`` from ``bottom``'s instead of from
    scratch. The top and bottom views have one camera's labels each; from a trained net they adapt in a few dozen
    steps where from scratch they need hundreds (the demo's CPU-sized training relies on it).
    """
    if crop_size <= 0 or crop_size % 32:
        raise InputError(f"crop_size must be a positive multiple of 32, got {crop_size}", item=item)
    views = dict(views)
    items = [it for it in read_labels(labels_dir) if (it.keypoints == it.keypoints).any()]
    threads = infer.use_all_cores()
    out_dir = Path(output_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)  # weights/ may not exist yet: checkpoints are written per epoch
    metrics: dict = {"threads": threads, "device": str(torch.device(device) if device else infer_device()),
                     "transfer": bool(transfer)}
    for i, view in enumerate(VIEWS):
        target = out_dir / f"hrnet_{view}.pth"
        if target.exists() and view != "top":
            metrics[view] = {"skipped": "exists"}
            continue
        init = _load_init(out_dir / f"hrnet_{VIEWS[i - 1]}.pth", width, stem_width, item) if transfer and i else None
        subset = [it for it in items if views.get(it.camera) == view]
        if len(subset) < 2:
            raise InputError(f"view {view!r}: need at least 2 labelled images, found {len(subset)} "
                             f"(cameras mapped to it: {[c for c, v in views.items() if v == view]})",
                             item=item, path=labels_dir)
        ckpt = Path(str(target) + ".train_checkpoint.pt")
        result = train_hrnet(subset, width=width, stem_width=stem_width, crop_size=crop_size, epochs=epochs,
                             batch_size=batch_size, lr=lr, seed=int(seed), max_minutes=max_minutes, checkpoint=ckpt,
                             device=device, init=init, log=log)
        with atomic_path(target) as tmp:
            torch.save(result.state_dict, tmp)
        ckpt.unlink(missing_ok=True)
        metrics[view] = {"images": len(subset), "epochs": len(result.history), "best_epoch": result.best_epoch,
                         "val_median_px": result.best_median_px, "seconds": round(result.seconds, 1)}
        if log:
            log.info("hrnet_%s: %d images, %d epochs, val median %.2f px, %.0f s", view, len(subset),
                     len(result.history), result.best_median_px, result.seconds)
    return metrics


def _load_init(path: Path, width: int, stem_width: int, item: str) -> dict:
    """The previous view's weights as the start of the next (``transfer``); they must have this run's sizes."""
    model = load_hrnet(path, device="cpu")  # checks the file against the architecture its shapes imply
    sizes = (model.c, model.stem_width, model.nof_joints, model.in_channels)
    if sizes != (width, stem_width, 15, 1):  # 15 joints, 1 input channel: what train_hrnet builds
        raise InputError(f"transfer: {path.name} was trained with other network sizes than width={width}, "
                         f"stem_width={stem_width}", item=item, path=str(path),
                         fix="delete the weights folder's hrnet_*.pth or run with overwrite=true")
    return model.state_dict()
