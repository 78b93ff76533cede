"""The synthetic project: the lab's layout, ground truth consistent with the cameras and the videos, determinism,
dropped frames, and the renderer's exactness."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mck.calibration_io import load_camera_params
from mck.geometry import project, rodrigues
from mck.synth import load_ground_truth, render
from mck.synth.rig import CAMERAS, make_rig
from mck.synth.writer import Spec, write_project
from mck.video import count_frames, iter_frames, video_info

CALIB = "20240422_calibration"
SESSIONS = ("20240422_J04301", "20240422_J04302")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """``python -m mck synth --tiny --sessions 2 --drop-frames``: the second session's side2 drops a frame."""
    root = tmp_path_factory.mktemp("synth") / "data"
    proc = subprocess.run([sys.executable, "-m", "mck", "synth", str(root), "--tiny", "--sessions", "2",
                           "--drop-frames", "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mck synth: wrote" in proc.stdout
    return root


def test_layout_is_the_labs(tiny: Path):
    for folder in (CALIB, *SESSIONS):
        videos = sorted(p.name for p in (tiny / folder).glob("*.mp4"))
        assert videos == sorted(f"{folder}.{cam}.mp4" for cam in CAMERAS)
        for cam in CAMERAS:
            info = video_info(tiny / folder / f"{folder}.{cam}.mp4")
            assert (info.width, info.height) == (320, 256)
    gt = tiny / "ground_truth"
    for name in ("camera_params.h5", "manifest.json", f"{CALIB}.board_poses.npz",
                 *(f"{s}.keypoints3d.npy" for s in SESSIONS), *(f"{s}.keypoints2d.npz" for s in SESSIONS)):
        assert (gt / name).exists(), name
    assert (tiny / "labels" / "labels.json").exists()
    assert not (tiny / SESSIONS[0] / "aligned_frame_numbers.csv").exists()
    assert (tiny / SESSIONS[1] / "aligned_frame_numbers.csv").exists()
    names, ext, intr = load_camera_params(gt / "camera_params.h5")
    assert names == list(CAMERAS)
    assert np.allclose(ext[0], 0)                                  # world = the top camera's frame


def test_ground_truth_2d_is_the_projection_of_3d(tiny: Path):
    names, ext, intr = load_camera_params(tiny / "ground_truth" / "camera_params.h5")
    for session in SESSIONS:
        gt = load_ground_truth(tiny, session)
        T = len(gt["keypoints3d"])
        assert gt["keypoints3d"].shape == (T, 15, 3) and T == 40
        assert gt["uv"].shape == (T, 6, 15, 2) and gt["visible"].shape == (T, 6, 15)
        assert [str(c) for c in gt["cameras"]] == names
        np.testing.assert_allclose(gt["uv"], project(gt["keypoints3d"], ext, intr), atol=1e-9)
        np.testing.assert_allclose(gt["centroid"], np.median(gt["uv"], axis=2), atol=1e-9)


def test_visibility_is_plausible(tiny: Path):
    gt = load_ground_truth(tiny, SESSIONS[0])
    visible, uv = gt["visible"], gt["uv"]
    fraction = visible.mean()
    assert 0.4 < fraction < 0.99, fraction                        # some keypoints hidden in some views…
    assert (~visible).any(axis=(0, 2)).all()                       # …in every camera
    assert (visible.sum(1) >= 2).mean() > 0.9                      # …but nearly always seen by ≥ 2 cameras
    inside = (uv[..., 0] >= -0.5) & (uv[..., 0] < 319.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] < 255.5)
    assert not (visible & ~inside).any()                           # visible ⇒ in the image
    # the paws are hidden from the top more often than the back is; the back is hidden from the bottom camera
    top, bottom = CAMERAS.index("top"), CAMERAS.index("bottom")
    assert visible[:, top, 4].mean() > visible[:, top, 9:13].mean()
    assert visible[:, bottom, 9:13].mean() > visible[:, bottom, 4].mean()
    # a visible keypoint lies on the rendered animal: brighter than the frame around it
    frames = np.stack(list(iter_frames(tiny / SESSIONS[0] / f"{SESSIONS[0]}.side1.mp4")))
    c = CAMERAS.index("side1")
    t, k = np.nonzero(visible[:, c])
    px = np.round(uv[t, c, k]).astype(int)
    on_animal = frames[t, px[:, 1], px[:, 0]].astype(float)
    assert np.median(on_animal) > np.median(frames) + 40


def test_dropped_frames_alignment_matches_the_videos(tiny: Path):
    session = SESSIONS[1]
    path = tiny / session / "aligned_frame_numbers.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["trigger_number", *CAMERAS]
        rows = list(reader)
    gt = load_ground_truth(tiny, session)
    assert len(rows) == len(gt["keypoints3d"]) == 40
    assert [int(r["trigger_number"]) for r in rows] == list(range(40))
    dropped_cameras = set()
    for c, cam in enumerate(CAMERAS):
        cells = [r[cam] for r in rows]
        filled = [int(v) for v in cells if v != ""]
        n_video = count_frames(tiny / session / f"{session}.{cam}.mp4")
        assert len(filled) == n_video, cam                     # one filled row per frame in the video…
        assert filled == list(range(n_video)), cam              # …in order
        assert np.array_equal(gt["frames"][:, c], [int(v) if v != "" else -1 for v in cells])
        if n_video < len(rows):
            dropped_cameras.add(cam)
    assert dropped_cameras == {"side2"}
    # the first session drops nothing: every video has one frame per trigger
    assert all(count_frames(tiny / SESSIONS[0] / f"{SESSIONS[0]}.{cam}.mp4") == 40 for cam in CAMERAS)


def test_calibration_ground_truth_matches_its_videos(tiny: Path):
    poses = np.load(tiny / "ground_truth" / f"{CALIB}.board_poses.npz")
    assert poses["rvecs"].shape == poses["tvecs"].shape == (120, 3)
    assert count_frames(tiny / CALIB / f"{CALIB}.top.mp4") == 120


def _small_project(out: Path, seed: int) -> Path:
    write_project(Spec(out=str(out), sessions=1, frames=8, calibration_frames=6, seed=seed, size=(160, 128),
                       labels_per_video=2, workers=1), progress=False)
    return out


def test_same_seed_gives_identical_ground_truth_and_videos(tmp_path: Path):
    a, b = _small_project(tmp_path / "a", 3), _small_project(tmp_path / "b", 3)
    c = _small_project(tmp_path / "c", 4)
    session = "20240422_J04301"
    ga, gb, gc = (load_ground_truth(p, session) for p in (a, b, c))
    for key in ("keypoints3d", "uv", "visible", "centroid", "frames"):
        assert np.array_equal(ga[key], gb[key]), key
    assert not np.allclose(ga["keypoints3d"], gc["keypoints3d"])
    pa, pb = (np.load(p / "ground_truth" / f"{CALIB}.board_poses.npz") for p in (a, b))
    assert np.array_equal(pa["rvecs"], pb["rvecs"]) and np.array_equal(pa["tvecs"], pb["tvecs"])
    ea, eb = (load_camera_params(p / "ground_truth" / "camera_params.h5")[1] for p in (a, b))
    assert np.array_equal(ea, eb)
    for folder in (session, CALIB):
        for cam in ("top", "side3"):
            fa = np.stack(list(iter_frames(a / folder / f"{folder}.{cam}.mp4")))
            fb = np.stack(list(iter_frames(b / folder / f"{folder}.{cam}.mp4")))
            assert np.array_equal(fa, fb), (folder, cam)


def test_renderer_casts_exact_rays():
    """A sphere rendered by the boxed, quadratic-form ray caster covers exactly the pixels whose ray hits it (a
    brute-force intersection of every pixel's ray), and depth is the camera z of the hit."""
    rig = make_rig((160, 128), seed=1)
    K, dist = rig.intrinsics[1]
    cam = render.CameraRays(K, dist, rig.extrinsics[1], rig.size)
    R = rodrigues(rig.extrinsics[1, :3])
    centre_cam = np.array([15.0, -10.0, 700.0])
    centre = R.T @ (centre_cam - rig.extrinsics[1, 3:])
    radius = 30.0
    axes = np.eye(3)[None] * radius @ R                            # rows: semi-axes in the world (any rotation)
    background = np.zeros((128, 160), np.float32)
    image, depth = render.render_ellipsoids(cam, centre[None], axes, np.array([200.0]), background)
    rays = cam.rays
    b = rays @ centre_cam
    a = np.sum(rays * rays, -1)
    disc = b * b - a * (centre_cam @ centre_cam - radius ** 2)
    hit = disc > 0
    assert np.array_equal(np.isfinite(depth), hit)
    t = (b - np.sqrt(np.where(hit, disc, 0))) / a
    np.testing.assert_allclose(depth[hit], t[hit], rtol=1e-5)
    assert image[hit].min() >= 200 * 0.45 - 1e-3 and image[~hit].max() == 0


def test_score_measures_known_errors(tiny: Path, tmp_path: Path):
    """``mck.score`` on outputs made from the truth with known offsets reports exactly those offsets: 0 for the
    true calibration, 3 mm for triangulation (with NaN holes not counted), 1 mm for GIMBAL on its 14 keypoints."""
    import shutil

    from mck.score import format_table, score_project
    from mck.skeleton import MOUSE

    out = tmp_path / "out"
    (out / CALIB).mkdir(parents=True)
    shutil.copy(tiny / "ground_truth" / "camera_params.h5", out / CALIB / f"{CALIB}.camera_params.h5")
    columns = np.asarray(MOUSE.node_order) + 1
    for session in SESSIONS:
        (out / session).mkdir()
        truth = load_ground_truth(tiny, session)["keypoints3d"]
        tri = truth + np.array([3.0, 0.0, 0.0])
        tri[::4, 0] = np.nan                                   # a quarter of the tail tips missing
        np.save(out / session / f"{session}.robust_triangulation.npy", tri)
        np.save(out / session / f"{session}.gimbal.npy", truth[:, columns] + np.array([0.0, 1.0, 0.0]))
    scores = score_project(tiny, out)
    cal = scores["calibration"][CALIB]
    assert cal["max_centre_error_mm"] < 1e-6 and cal["max_focal_error_pct"] < 1e-9
    assert cal["max_reprojection_rms_px"] < 1e-6
    tri, gim, same = scores["triangulation"], scores["gimbal"], scores["same_points"]
    np.testing.assert_allclose([tri["median_mm"], tri["p95_mm"]], 3.0, atol=1e-6)
    n_frames = sum(len(load_ground_truth(tiny, s)["keypoints3d"]) for s in SESSIONS)
    expected_missing = sum(len(range(0, len(load_ground_truth(tiny, s)["keypoints3d"]), 4)) for s in SESSIONS)
    assert tri["fraction_triangulated"] == pytest.approx(1 - expected_missing / (15 * n_frames))
    np.testing.assert_allclose([gim["median_mm"], gim["mean_mm"]], 1.0, atol=1e-6)
    assert gim["fraction_triangulated"] == 1.0
    assert same["gimbal"]["n"] == same["triangulation"]["n"] == 14 * n_frames    # tail tip is not a GIMBAL node
    assert same["keypoints_gimbal_better"] == 14 and len(same["per_keypoint"]) == 14
    assert scores["centernet"] is None and scores["hrnet"] is None
    table = format_table(scores)
    assert "median 1.00 vs 3.00" in table and "lower on 14 of 14 keypoints" in table and "—" in table
