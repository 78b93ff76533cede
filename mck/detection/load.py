"""Strict loading of the lab's weight files (bare state dicts) and of our own smaller trained nets.

Width, joints and input channels are inferred from the state dict's shapes, so ``centernet.pth`` (c=32) and a
demo net (c=8) load through the same call. A file whose keys or shapes do not match → ``InputError`` naming the
file and the first mismatching key; never a half-loaded model.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from mck.detection.centernet import ConvNet
from mck.detection.hrnet import HRNet
from mck.errors import InputError


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _read_state_dict(path: str | os.PathLike, kind: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{kind} weights file not found", path=str(path),
                         fix=f"train it (step train_{kind.lower()}) or point the project config at the lab's file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's own text advises weights_only=False (arbitrary code): never repeat it
        raise InputError(f"cannot read {kind} weights: {_why_unreadable(path)}", path=str(path),
                         fix="expected a state dict written by torch.save; re-copy or re-train it") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{kind} weights file is not a state dict (got {type(obj).__name__})", path=str(path))
    return obj


def _why_unreadable(path: Path) -> str:
    """A short reason a file did not load as plain tensors (from its first bytes, not torch's message)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"cannot open it ({exc.strerror})"
    if size == 0:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "the torch archive is corrupted or truncated"
    if head[:1] == b"\x80":
        return "it is a pickle of Python objects other than tensors; mck loads only plain state dicts"
    return "not a torch weights file"


def _shape(sd: dict, key: str, dim: int, path, kind: str) -> int:
    if key not in sd or sd[key].dim() <= dim:
        raise InputError(f"not a {kind} state dict: first mismatching key {key!r} (missing or wrong rank)",
                         path=str(path), fix=f"is this really a {kind} weights file?")
    return int(sd[key].shape[dim])


def _strict_load(model: nn.Module, sd: dict, path, kind: str) -> None:
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in sd:
            raise InputError(f"{kind} weights do not match the architecture: first mismatching key {key!r} missing "
                             "from the file", path=str(path))
        if tuple(sd[key].shape) != tuple(value.shape):
            raise InputError(f"{kind} weights do not match the architecture: first mismatching key {key!r} has "
                             f"shape {tuple(sd[key].shape)}, expected {tuple(value.shape)}", path=str(path))
    for key in sd:
        if key not in expected:
            raise InputError(f"{kind} weights do not match the architecture: first mismatching key {key!r} is "
                             "unexpected", path=str(path))
    model.load_state_dict(sd, strict=True)


def load_centernet(path: str | os.PathLike, device: str | torch.device | None = None) -> ConvNet:
    """Load a CenterNet ``ConvNet`` state dict (any ``initial_channels``) in eval mode on ``device``."""
    sd = _read_state_dict(path, "CenterNet")
    c = _shape(sd, "conv1.weight", 0, path, "CenterNet")
    cin = _shape(sd, "conv1.weight", 1, path, "CenterNet")
    model = ConvNet(initial_channels=c, in_channels=cin)
    _strict_load(model, sd, path, "CenterNet")
    return model.to(device or default_device()).eval()


def load_hrnet(path: str | os.PathLike, device: str | torch.device | None = None) -> HRNet:
    """Load an ``HRNet`` state dict (any width ``c`` / joints / input channels) in eval mode on ``device``."""
    sd = _read_state_dict(path, "HRNet")
    c = _shape(sd, "final_layer.weight", 1, path, "HRNet")
    joints = _shape(sd, "final_layer.weight", 0, path, "HRNet")
    cin = _shape(sd, "conv1.weight", 1, path, "HRNet")
    stem = _shape(sd, "conv1.weight", 0, path, "HRNet")
    model = HRNet(c=c, nof_joints=joints, in_channels=cin, stem_width=stem)
    _strict_load(model, sd, path, "HRNet")
    return model.to(device or default_device()).eval()
