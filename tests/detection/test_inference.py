"""Batched inference against the lab's per-frame loop (docs/algorithms.md §D.1, §D.2), sub-pixel parsing (§E QUIRK 12), and the
``centernet`` / ``hrnet`` video steps (file layout, re-run, short video, interrupted-then-resumed run).

Networks are tiny (HRNet c=4, stem 8; ConvNet c=4) with random weights of ordinary magnitude: HRNet's own
initialisation (N(0, 0.001²)) gives near-constant heatmaps whose argmax is decided by round-off.
"""
from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import scipy.ndimage
import torch

from mck.detection import ConvNet, HRNet, infer, postprocess
from mck.detection.lab_reference import lab_centroid, lab_keypoints
from mck.detection.random_init import randomize
from mck.errors import InputError
from mck.runtime import Preempted, clear_stop, request_stop
from mck.steps import centernet as centernet_step
from mck.steps import hrnet as hrnet_step
from mck.steps._detection_loop import checkpoint_path
from mck.video import iter_frames, write_video

JOINTS = 15


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """One intra-op thread, also inside the steps (their ``use_all_cores`` is patched): with another process busy
    on the cores, OpenMP's spinning threads make a tiny HRNet forward far slower (figures: docs/algorithms.md,
    Measured figures). Results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(infer, "use_all_cores", lambda: 1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- helpers

def tiny_hrnet(seed: int = 0) -> HRNet:
    return randomize(HRNet(c=4, nof_joints=JOINTS, stem_width=8), seed)


def tiny_convnet(seed: int = 0) -> ConvNet:
    return randomize(ConvNet(initial_channels=4), seed)


def mouse_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Noisy grey frames with a bright ellipse moving across them (uint8 (n, h, w))."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (n, h, w)).astype(np.uint8)
    for i in range(n):
        cx, cy = int(w * (0.2 + 0.6 * i / max(n - 1, 1))), int(h * (0.3 + 0.4 * rng.uniform()))
        cv2.ellipse(frames[i], (cx, cy), (w // 8, h // 12), 30.0 * i, 0, 360, 220, -1)
    return frames


# ---------------------------------------------------------------- parity with the lab's procedure

def test_predict_centroids_matches_lab_loop():
    model = tiny_convnet(3)
    frames = mouse_frames(6, 256, 320)
    expected = np.stack([lab_centroid(model, f) for f in frames])
    got = infer.predict_centroids(model, frames, subpixel=False)
    assert got.dtype == np.int64 and got.shape == (6, 2)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected, axis=0)) > 1  # the nets are not degenerate: centroids differ between frames
    chunks = np.concatenate([infer.predict_centroids(model, frames[s:s + 4]) for s in range(0, 6, 4)])
    np.testing.assert_array_equal(chunks, got)


def test_predict_keypoints_matches_lab_loop():
    model = tiny_hrnet()
    frames = mouse_frames(5, 96, 128, seed=1)
    size = 64
    # centre, corners and edges: the zero padding of the crop matters there
    centers = np.array([[64, 48], [3, 2], [127, 95], [0, 60], [100, 0]])
    expected = [lab_keypoints(model, f, c, size) for f, c in zip(frames, centers)]
    uv, conf = infer.predict_keypoints(model, frames, centers, crop_size=size, subpixel=False)
    assert uv.shape == (5, JOINTS, 2) and uv.dtype == np.float32
    assert conf.shape == (5, JOINTS) and conf.dtype == np.float32
    np.testing.assert_array_equal(uv, np.stack([e[0] for e in expected]))
    np.testing.assert_allclose(conf, np.stack([e[1] for e in expected]), atol=1e-4, rtol=0)
    assert len(np.unique(uv.reshape(-1, 2), axis=0)) > 10  # argmaxes are not all tied at one corner
    for bs in (1, 2):
        parts = [infer.predict_keypoints(model, frames[s:s + bs], centers[s:s + bs], size) for s in range(0, 5, bs)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), uv)
        np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), conf, atol=1e-4, rtol=0)


def test_smooth_centroids_is_the_lab_median_filter():
    rng = np.random.default_rng(0)
    c = rng.integers(0, 600, (40, 2)).astype(np.int64)
    expected = scipy.ndimage.median_filter(c, size=(11, 1)).astype(int)
    np.testing.assert_array_equal(infer.smooth_centroids(c), expected)


# ---------------------------------------------------------------- sub-pixel parsing (docs/algorithms.md §E QUIRK 12)

def gaussian_map(h: int, w: int, cx: float, cy: float, var: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * var)).astype(np.float32)


def test_hrnet_subpixel_recovers_off_grid_peak():
    rng = np.random.default_rng(0)
    peaks = rng.uniform(4, 28, size=(40, JOINTS, 2))  # cells of a 32×32 map
    var = 12.5  # the training target exp(−d²/100) in crop px is exp(−d²/25) in cells: σ² = 12.5 cells²
    maps = np.stack([[gaussian_map(32, 32, x, y, var) for x, y in frame] for frame in peaks])
    sub, conf = postprocess.parse_hrnet(maps, subpixel=True)
    flat, conf0 = postprocess.parse_hrnet(maps, subpixel=False)
    err_sub = np.abs(sub / postprocess.HRNET_STRIDE - peaks)
    err_int = np.abs(flat / postprocess.HRNET_STRIDE - peaks)
    assert err_sub.max() < 0.25
    assert 0.45 < err_int.max() <= 0.5 + 1e-9
    assert err_sub.mean() < err_int.mean() / 3
    np.testing.assert_array_equal(conf, conf0)  # refinement moves the position, not the confidence


def test_centernet_subpixel_recovers_off_grid_peak():
    rng = np.random.default_rng(1)
    peaks = rng.uniform(3, [16, 12], size=(60, 2))  # (u, v) cells of a 16-row × 20-col map, away from the edges
    var = 800.0 / 16 ** 2  # exp(−d²/1600) half-res px, 16 half-res px per cell
    maps = np.stack([gaussian_map(16, 20, x, y, var) for x, y in peaks])
    blurred = postprocess.blur_centernet(maps, cv2.BORDER_CONSTANT)
    stride = postprocess.CENTERNET_STRIDE
    err_sub = np.abs(postprocess.parse_centernet(blurred, subpixel=True) / stride - peaks)
    err_int = np.abs(postprocess.parse_centernet(blurred, subpixel=False) / stride - peaks)
    assert err_sub.max() < 0.25
    assert 0.45 < err_int.max() <= 0.5 + 1e-9
    assert err_sub.mean() < err_int.mean() / 3


def test_subpixel_offsets_stay_within_half_a_cell_at_edges_and_plateaus():
    maps = np.zeros((3, 1, 8, 8), np.float32)
    maps[0, 0, 0, 0] = 1.0                  # corner: no neighbours on one side → offset 0
    maps[1, 0, 4, 4] = maps[1, 0, 4, 5] = 1  # plateau: first maximum, then at most half a cell
    uv, _ = postprocess.parse_hrnet(maps, subpixel=True)
    assert np.all(np.isfinite(uv))
    np.testing.assert_array_equal(uv[0, 0], [0, 0])
    assert abs(uv[1, 0, 0] / 2 - 4) <= 0.5 and uv[1, 0, 1] == 8
    np.testing.assert_array_equal(uv[2, 0], [0, 0])  # all-zero map: argmax 0, no NaN


# ---------------------------------------------------------------- the video steps

T, H, W, CROP = 12, 128, 160, 64


@pytest.fixture(scope="module")
def step_inputs(tmp_path_factory):
    """A 12-frame 160×128 video, tiny random weights and a centroid file (edges included)."""
    d = tmp_path_factory.mktemp("steps")
    video = d / "20240422_J04301.top.mp4"
    write_video(video, mouse_frames(T, H, W, seed=2), fps=30)
    torch.save(tiny_convnet(1).state_dict(), d / "centernet.pth")
    torch.save(tiny_hrnet(2).state_dict(), d / "hrnet_top.pth")
    cx = np.linspace(4, W - 3, T).round().astype(np.int64)
    cy = np.r_[np.full(T // 2, 2), np.full(T - T // 2, H - 2)].astype(np.int64)
    np.save(d / "given.centroid.npy", np.stack([cx, cy], 1))
    return d, video


@pytest.fixture
def no_stop():
    clear_stop()
    yield
    clear_stop()


def read_keypoints(path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["uv"][()], f["conf"][()]


def test_centernet_step_output_and_parity(step_inputs, tmp_path, no_stop):
    d, video = step_inputs
    out = tmp_path / "v.centroid.npy"
    metrics = centernet_step.run(str(video), str(d / "centernet.pth"), str(out), item="v", batch_size=5,
                                 subpixel=False, save_every=4, device="cpu")
    c = np.load(out)
    assert c.shape == (T, 2) and c.dtype == np.int64
    assert metrics["frames"] == T and metrics["resumed_from"] == 0
    assert not checkpoint_path(str(out)).exists()
    model = tiny_convnet(1)
    np.testing.assert_array_equal(c, np.stack([lab_centroid(model, f) for f in iter_frames(video)]))

    sub = tmp_path / "s.centroid.npy"
    centernet_step.run(str(video), str(d / "centernet.pth"), str(sub), batch_size=5, subpixel=True, device="cpu")
    s = np.load(sub)
    assert s.shape == (T, 2) and s.dtype == np.float64 and np.all(np.isfinite(s))

    before = out.read_bytes()
    centernet_step.run(str(video), str(d / "centernet.pth"), str(out), item="v", batch_size=5, subpixel=False,
                       save_every=4, device="cpu")
    assert out.read_bytes() == before


def test_hrnet_step_output_and_parity(step_inputs, tmp_path, no_stop):
    d, video = step_inputs
    out = tmp_path / "v.keypoints.h5"
    centroids = np.load(d / "given.centroid.npy")
    metrics = hrnet_step.run(str(video), str(d / "given.centroid.npy"), str(d / "hrnet_top.pth"), str(out), item="v",
                             batch_size=5, crop_size=CROP, subpixel=False, save_every=4, device="cpu")
    uv, conf = read_keypoints(out)
    assert uv.shape == (T, JOINTS, 2) and uv.dtype == np.float32
    assert conf.shape == (T, JOINTS) and conf.dtype == np.float32
    assert metrics["frames"] == T and not checkpoint_path(str(out)).exists()
    assert np.all((conf >= 0) & (conf <= 1))

    model = tiny_hrnet(2)
    centers = scipy.ndimage.median_filter(centroids, size=(11, 1)).astype(int)
    expected = [lab_keypoints(model, f, c, CROP) for f, c in zip(iter_frames(video), centers)]
    np.testing.assert_array_equal(uv, np.stack([e[0] for e in expected]))
    np.testing.assert_allclose(conf, np.stack([e[1] for e in expected]), atol=1e-4, rtol=0)

    hrnet_step.run(str(video), str(d / "given.centroid.npy"), str(d / "hrnet_top.pth"), str(out), item="v",
                   batch_size=5, crop_size=CROP, subpixel=False, save_every=4, device="cpu")
    uv2, conf2 = read_keypoints(out)
    np.testing.assert_array_equal(uv2, uv)
    np.testing.assert_array_equal(conf2, conf)

    sub = tmp_path / "s.keypoints.h5"
    hrnet_step.run(str(video), str(d / "given.centroid.npy"), str(d / "hrnet_top.pth"), str(sub), batch_size=5,
                   crop_size=CROP, subpixel=True, device="cpu")
    uv_s, conf_s = read_keypoints(sub)
    assert uv_s.shape == (T, JOINTS, 2) and np.all(np.abs(uv_s - uv) <= 1.0 + 1e-6)  # ±½ cell = 1 crop px
    np.testing.assert_allclose(conf_s, conf, atol=1e-6)


def test_hrnet_step_video_shorter_than_centroids(step_inputs, tmp_path, no_stop):
    d, video = step_inputs
    centroids = tmp_path / "long.centroid.npy"
    np.save(centroids, np.full((T + 5, 2), 64, np.int64))
    with pytest.raises(InputError) as err:
        hrnet_step.run(str(video), str(centroids), str(d / "hrnet_top.pth"), str(tmp_path / "k.h5"), item="v",
                       crop_size=CROP, device="cpu")
    assert str(video) in str(err.value) and "shorter" in str(err.value)
    assert not (tmp_path / "k.h5").exists()


def test_hrnet_step_bad_inputs_name_the_file(step_inputs, tmp_path, no_stop):
    d, video = step_inputs
    bad = tmp_path / "bad.centroid.npy"
    np.save(bad, np.zeros((T, 3), np.int64))
    with pytest.raises(InputError, match="expected shape") as err:
        hrnet_step.run(str(video), str(bad), str(d / "hrnet_top.pth"), str(tmp_path / "k.h5"), crop_size=CROP,
                       device="cpu")
    assert str(bad) in str(err.value)
    with pytest.raises(InputError, match="multiple of 32"):
        hrnet_step.run(str(video), str(d / "given.centroid.npy"), str(d / "hrnet_top.pth"), str(tmp_path / "k.h5"),
                       crop_size=50, device="cpu")


@pytest.mark.parametrize("kind", ["hrnet", "centernet"])
def test_step_stopped_then_resumed_is_identical(kind, step_inputs, tmp_path, monkeypatch, no_stop):
    """A stop request (SLURM's signal) mid-video writes the checkpoint; the re-run resumes there, same output."""
    d, video = step_inputs

    def run(out):
        if kind == "hrnet":
            return hrnet_step.run(str(video), str(d / "given.centroid.npy"), str(d / "hrnet_top.pth"), str(out),
                                  batch_size=2, crop_size=CROP, subpixel=True, save_every=3, device="cpu")
        return centernet_step.run(str(video), str(d / "centernet.pth"), str(out), batch_size=2, subpixel=True,
                                  save_every=3, device="cpu")

    def read(out):
        return read_keypoints(out) if kind == "hrnet" else (np.load(out),)

    suffix = ".keypoints.h5" if kind == "hrnet" else ".centroid.npy"
    whole = tmp_path / ("whole" + suffix)
    run(whole)

    name = "predict_keypoints" if kind == "hrnet" else "predict_centroids"
    original = getattr(infer, name)
    calls = []

    def stop_after_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            request_stop()
        return original(*args, **kwargs)

    monkeypatch.setattr(infer, name, stop_after_three)
    out = tmp_path / ("part" + suffix)
    with pytest.raises(Preempted):
        run(out)
    assert not out.exists() and checkpoint_path(str(out)).exists()
    monkeypatch.setattr(infer, name, original)
    clear_stop()
    metrics = run(out)
    assert metrics["resumed_from"] == 6 and metrics["frames_processed"] == T - 6
    assert not checkpoint_path(str(out)).exists()
    for a, b in zip(read(out), read(whole)):
        np.testing.assert_array_equal(a, b)
