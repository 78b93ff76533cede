"""Tiny training runs (docs/algorithms.md §D.4, §D.5 with §E QUIRK 11 fixes): seeded determinism, masked missing labels, the
per-epoch validation error, resume from the per-epoch checkpoint, strict loading of the result.

Synthetic labelled images: 160×128 grey frames with 15 bright dots (the keypoints) around a random centre.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from mck.detection import infer, load_centernet, load_hrnet
from mck.detection.labels import LabelledImage
from mck.detection.train import hrnet_targets, train_centernet, train_hrnet

H, W, CROP, JOINTS = 128, 160, 64, 15
HRNET = dict(width=4, stem_width=8, crop_size=CROP, batch_size=3, lr=1e-3, device="cpu")
CENTERNET = dict(initial_channels=4, batch_size=3, lr=1e-3, device="cpu")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread (see test_inference); also keeps runs bit-identical whatever the machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def labelled_images(root, n: int = 7, missing: float = 0.0, seed: int = 0) -> list[LabelledImage]:
    """``n`` PNGs ``S.top.{i}.png`` with 15 dots each; a fraction ``missing`` of the labels set to NaN."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-20, 20, (JOINTS, 2))
    items = []
    for i in range(n):
        img = rng.integers(0, 40, (H, W)).astype(np.uint8)
        centre = rng.uniform([40, 40], [W - 40, H - 40])
        kp = centre + offsets + rng.normal(0, 1.5, (JOINTS, 2))
        for u, v in kp:
            cv2.circle(img, (int(round(u)), int(round(v))), 2, 230, -1)
        drop = rng.uniform(size=JOINTS) < missing
        drop[0] = False  # every image keeps at least one label
        kp[drop] = np.nan
        path = root / f"20240422_J04301.top.{i}.png"
        cv2.imwrite(str(path), np.repeat(img[:, :, None], 3, axis=2))
        items.append(LabelledImage(path, "top", kp))
    return items


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history]


@pytest.mark.parametrize("kind", ["hrnet", "centernet"])
def test_seeded_runs_are_identical_and_report_validation_error(kind, tmp_path):
    items = labelled_images(tmp_path)
    train = train_hrnet if kind == "hrnet" else train_centernet
    kwargs = HRNET if kind == "hrnet" else CENTERNET
    a = train(items, epochs=2, seed=3, **kwargs)
    b = train(items, epochs=2, seed=3, **kwargs)
    assert same_weights(a.state_dict, b.state_dict)
    assert without_seconds(a.history) == without_seconds(b.history)
    assert [e["epoch"] for e in a.history] == [0, 1]
    for e in a.history:
        assert math.isfinite(e["train_loss"]) and math.isfinite(e["val_median_px"]) and e["val_median_px"] >= 0
    assert a.best_epoch in (0, 1)
    assert a.best_median_px == min(e["val_median_px"] for e in a.history)
    c = train(items, epochs=1, seed=4, **kwargs)
    assert not same_weights(c.state_dict, train(items, epochs=1, seed=3, **kwargs).state_dict)


def test_missing_labels_are_masked(tmp_path):
    items = labelled_images(tmp_path, missing=0.4)
    assert sum(np.isnan(it.keypoints).any() for it in items) >= 5
    result = train_hrnet(items, epochs=2, seed=0, **HRNET)
    assert all(math.isfinite(e["train_loss"]) and math.isfinite(e["val_median_px"]) for e in result.history)
    assert all(torch.isfinite(v.float()).all() for v in result.state_dict.values())

    kp = items[0].keypoints[None]
    target, mask = hrnet_targets(kp, CROP)
    assert np.all(np.isfinite(target))
    np.testing.assert_array_equal(mask[0], np.isfinite(kp[0]).all(axis=1))
    assert target[0, ~np.isfinite(kp[0, :, 0])].max() == 0  # no blob at the origin for a missing label (QUIRK 11)


@pytest.mark.parametrize("kind", ["hrnet", "centernet"])
def test_resume_from_checkpoint_gives_the_same_weights(kind, tmp_path):
    items = labelled_images(tmp_path)
    train = train_hrnet if kind == "hrnet" else train_centernet
    kwargs = HRNET if kind == "hrnet" else CENTERNET
    whole = train(items, epochs=3, seed=1, checkpoint=tmp_path / "whole.pt", **kwargs)
    ckpt = tmp_path / "part.pt"
    first = train(items, epochs=1, seed=1, checkpoint=ckpt, **kwargs)  # "killed" after epoch 0
    assert ckpt.exists() and len(first.history) == 1
    resumed = train(items, epochs=3, seed=1, checkpoint=ckpt, **kwargs)
    assert [e["epoch"] for e in resumed.history] == [0, 1, 2]
    assert without_seconds(resumed.history) == without_seconds(whole.history)
    assert resumed.best_epoch == whole.best_epoch
    assert same_weights(resumed.state_dict, whole.state_dict)
    final_whole = torch.load(tmp_path / "whole.pt", weights_only=False)["model"]
    final_resumed = torch.load(ckpt, weights_only=False)["model"]
    assert same_weights(final_whole, final_resumed)  # the last epoch's weights too, not only the best


def test_trained_weights_load_strictly_and_run(tmp_path):
    items = labelled_images(tmp_path)
    hr = train_hrnet(items, epochs=1, seed=0, **HRNET)
    torch.save(hr.state_dict, tmp_path / "hrnet_top.pth")
    net = load_hrnet(tmp_path / "hrnet_top.pth", device="cpu")
    assert (net.c, net.stem_width, net.nof_joints) == (4, 8, JOINTS) and not net.training
    frames = np.stack([cv2.imread(str(it.path))[:, :, 0] for it in items[:2]])
    uv, conf = infer.predict_keypoints(net, frames, np.array([[80, 64], [80, 64]]), crop_size=CROP)
    assert uv.shape == (2, JOINTS, 2) and np.all(np.isfinite(uv))

    cn = train_centernet(items, epochs=1, seed=0, **CENTERNET)
    torch.save(cn.state_dict, tmp_path / "centernet.pth")
    net = load_centernet(tmp_path / "centernet.pth", device="cpu")
    assert net.initial_channels == 4 and not net.training
    assert infer.predict_centroids(net, frames).shape == (2, 2)


@pytest.mark.slow
def test_hrnet_learns_the_dots(tmp_path):
    """A few dozen epochs on 12 images bring the validation error well below a random guess inside the crop."""
    items = labelled_images(tmp_path, n=12)
    result = train_hrnet(items, epochs=40, seed=0, **HRNET)
    first, best = result.history[0]["val_median_px"], result.best_median_px
    assert best < 8.0 and best < first
