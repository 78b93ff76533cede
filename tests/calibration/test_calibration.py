"""Chessboard detection on rendered boards, bundle adjustment on synthetic corners, and the calibration step end to
end on the tiny synthetic project (scored against its ground truth)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mck.calibration import bundle_adjust, calibrate, detect_chessboard, detect_chessboard_scored
from mck.calibration.calibrate import project_views
from mck.geometry import project, rodrigues
from mck.synth import board, render
from mck.synth.rig import FLOOR_Z, make_rig

RIG = make_rig((640, 512), seed=0)


def _centres(extrinsics: np.ndarray) -> np.ndarray:
    R = rodrigues(extrinsics[:, :3])
    return -np.einsum("cji,cj->ci", R, extrinsics[:, 3:])


def _board_pose(camera: int, spin: float, back: bool = False, position=(10.0, -20.0, FLOOR_Z - 90)):
    """Board → world (R, t) with the board's centre at ``position``, facing ``camera`` (or turned away from it:
    the camera sees the back face), turned by ``spin`` rad in its plane."""
    pos = np.asarray(position, float)
    centre = _centres(RIG.extrinsics)[camera]
    n = centre - pos
    n /= np.linalg.norm(n)
    n = -n if back else n
    helper = np.array([0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    ex = np.cross(helper, n)
    ex /= np.linalg.norm(ex)
    ey = np.cross(n, ex)
    ex, ey = np.cos(spin) * ex + np.sin(spin) * ey, -np.sin(spin) * ex + np.cos(spin) * ey
    R = np.stack([ex, ey, n], axis=1)
    t = pos - R @ np.array([2.0 * board.SQUARE, 3.0 * board.SQUARE, 0.0])
    return R, t


def _render(camera: int, R: np.ndarray, t: np.ndarray, seed: int = 0, rig=RIG):
    """A rendered, noisy, blurred grey frame of the board and the true corner pixels (35, 2) in board order."""
    K, dist = rig.intrinsics[camera]
    cam = render.CameraRays(K, dist, rig.extrinsics[camera], rig.size)
    width, height = rig.size
    background = np.full((height, width), 45.0, np.float32)
    image = render.render_plane(cam, t, R[:, 0], R[:, 1], board.texture, background, supersample=2,
                                extent=board.paper_extent())
    frame = render.finish(image, np.random.default_rng(seed), blur=0.8, noise=3.0)
    world = board.object_points() @ R.T + t
    truth = project(world[None], rig.extrinsics[camera:camera + 1], [rig.intrinsics[camera]])[0, 0]
    return frame, truth


@pytest.mark.parametrize("camera", [0, 1, 5])
def test_detects_all_corners_in_board_order(camera):
    frame, truth = _render(camera, *_board_pose(camera, spin=0.4))
    result = detect_chessboard_scored(frame)
    assert result is not None
    corners, scores = result
    assert corners.shape == (35, 2)
    errors = np.linalg.norm(corners - truth, axis=1)
    assert errors.max() < 0.5, errors.max()
    assert scores[0] - scores[1] > 0.3                        # the anchor dot is unambiguous


@pytest.mark.parametrize("spin", [np.pi, np.pi + 0.5, -0.3])
@pytest.mark.parametrize("back", [False, True])
def test_order_follows_the_anchor_dot_whatever_the_rotation_or_side(spin, back):
    """Turned by 180° (the grid alone is then ambiguous) or seen from the back of the two-sided board, point 0 is
    still the corner next to the dot."""
    frame, truth = _render(1, *_board_pose(1, spin=spin, back=back))
    corners = detect_chessboard(frame)
    assert corners is not None
    assert np.linalg.norm(corners - truth, axis=1).max() < 0.5


def test_blank_and_noise_frames_give_no_detection():
    rng = np.random.default_rng(0)
    assert detect_chessboard(np.zeros((512, 640), np.uint8)) is None
    assert detect_chessboard(np.full((256, 320), 128, np.uint8)) is None
    noise = np.clip(rng.normal(100, 40, (512, 640)), 0, 255).astype(np.uint8)
    assert detect_chessboard(noise) is None
    # a checker pattern without its printed margin and dot (e.g. a floor tile pattern) is not the board
    tiles = ((np.add.outer(np.arange(512) // 16, np.arange(640) // 16) % 2) * 200 + 30).astype(np.uint8)
    assert detect_chessboard(tiles) is None


def test_small_board_of_the_tiny_preset_is_detected():
    """At 320×256 the squares are ~5 px: the board is located by its saddle points and detected upscaled."""
    rig = make_rig((320, 256), seed=0)
    frame, truth = _render(2, *_board_pose(2, spin=1.0), rig=rig)
    corners = detect_chessboard(frame)
    assert corners is not None
    assert np.linalg.norm(corners - truth, axis=1).max() < 0.6


def _synthetic_corners(frames: int, seed: int, noise: float, rig=RIG, max_incidence: float = 65.0):
    """Ground-truth corners (C, F, 35, 2) of the synthetic calibration video with Gaussian pixel noise, NaN where
    the board is not fully in a camera's image or seen at more than ``max_incidence`` degrees."""
    rvecs, tvecs = board.board_poses(frames, np.random.default_rng(seed + 101), rig=rig)
    R = rodrigues(rvecs)
    world = np.einsum("fij,nj->fni", R, board.object_points()) + tvecs[:, None]
    uv = project(world, rig.extrinsics, rig.intrinsics).transpose(1, 0, 2, 3)
    sight = _centres(rig.extrinsics)[:, None] - world.mean(1)[None]
    cos = np.abs(np.sum(sight * R[None, :, :, 2], -1)) / np.linalg.norm(sight, axis=-1)
    width, height = rig.size
    inside = ((uv[..., 0] > 3) & (uv[..., 0] < width - 3) & (uv[..., 1] > 3) & (uv[..., 1] < height - 3)).all(-1)
    seen = inside & (cos > np.cos(np.deg2rad(max_incidence)))
    rng = np.random.default_rng(seed)
    corners = np.where(seen[..., None, None], uv + rng.normal(0, noise, uv.shape), np.nan)
    return corners


def test_calibration_recovers_the_rig_from_noisy_corners():
    """0.12 px corner noise per coordinate (more than the detector's measured error;
    figures: docs/algorithms.md, Measured figures) over the default preset's 360-frame calibration video, boards
    seen at up to 65°: camera centres within 1 mm, focal lengths within 0.2 %."""
    corners = _synthetic_corners(360, seed=0, noise=0.12)
    obj = board.object_points()
    ext, intr, poses, _ = calibrate(corners, obj, [RIG.size] * 6)
    result = bundle_adjust(corners, ext, intr, obj, poses)
    centre_error = np.linalg.norm(_centres(result.extrinsics) - _centres(RIG.extrinsics), axis=1)
    focal_error = np.array([abs(K[0, 0] / K0[0, 0] - 1) for (K, _), K0 in zip(result.intrinsics, RIG.Ks)])
    assert centre_error.max() < 1.0, centre_error
    assert focal_error.max() < 0.002, focal_error
    assert np.all(np.abs(result.rms_px - 0.12 * np.sqrt(2)) < 0.03), result.rms_px
    assert result.success and result.rejected.sum() == 0


def test_bundle_adjustment_rejects_a_misordered_view():
    """One camera's corners of a frame seen by several cameras are put in mirrored order (what a wrong anchor
    decision would give): that view is rejected and the rig is still recovered."""
    corners = _synthetic_corners(360, seed=1, noise=0.12)
    seen = np.isfinite(corners).all((2, 3))
    frame = int(np.flatnonzero(seen.sum(0) >= 3)[5])
    camera = int(np.flatnonzero(seen[:, frame])[1])
    corners[camera, frame] = corners[camera, frame].reshape(7, 5, 2)[:, ::-1].reshape(35, 2)
    obj = board.object_points()
    ext, intr, poses, _ = calibrate(corners, obj, [RIG.size] * 6)
    result = bundle_adjust(corners, ext, intr, obj, poses)
    assert not result.views[camera, frame]
    assert result.rejected[camera] >= 1
    centre_error = np.linalg.norm(_centres(result.extrinsics) - _centres(RIG.extrinsics), axis=1)
    assert centre_error.max() < 1.5, centre_error


def test_camera_without_shared_views_is_named():
    corners = _synthetic_corners(120, seed=0, noise=0.1)
    own = np.flatnonzero(np.isfinite(corners[0]).all((1, 2)))[:6]
    corners[3] = np.nan
    corners[3, own] = corners[0, own]                         # side3 sees only boards nobody else sees
    corners[np.arange(6) != 3][:, own] = np.nan
    corners[:, own] = np.where((np.arange(6) == 3)[:, None, None, None], corners[:, own], np.nan)
    with pytest.raises(ValueError, match="camera side3 shares no board view"):
        calibrate(corners, board.object_points(), [RIG.size] * 6, names=list(RIG.names))


def test_analytic_jacobian_matches_finite_differences():
    rng = np.random.default_rng(3)
    cams = np.array([[800, 805, 320, 256, -0.1, 0.05, 1e-3, -5e-4, 0.3, -0.2, 0.5, 10, -20, 800.0],
                     [700, 702, 310, 250, -0.05, 0.02, -1e-3, 5e-4, 1.3, 0.4, -2.9, -30, 5, 700.0]])
    frames = np.array([[0.2, 0.5, -0.3, -20, 10, 30.0], [2.0, -0.5, 1.0, 5, -5, -40.0]]) + rng.normal(0, 0.01, 6)
    obj = board.object_points()
    vc, vf = np.array([0, 1, 1]), np.array([0, 0, 1])
    _, Jc, Jf = project_views(cams, frames, obj, vc, vf, jacobian=True)
    for params, J, index in ((cams, Jc, vc), (frames, Jf, vf)):
        for k in range(params.shape[1]):
            h = 1e-6 * max(1.0, abs(params[0, k]))
            numeric = np.zeros(J.shape[:-1])
            for sign in (1, -1):
                shifted = params.copy()
                shifted[:, k] += sign * h
                args = (shifted, frames) if params is cams else (cams, shifted)
                numeric += sign * project_views(*args, obj, vc, vf) / (2 * h)
            scale = max(1.0, np.abs(numeric).max())
            assert np.abs(numeric - J[..., k]).max() < 1e-5 * scale, (k, np.abs(numeric - J[..., k]).max())


# --- the step, end to end -----------------------------------------------------------------------------------


def _mck(args, data_root: Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "MCK_DATA_ROOT": str(data_root)}
    env.pop("MCK_ITEMS_URL", None)
    return subprocess.run([sys.executable, "-m", "mck", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_calibration(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    proc = subprocess.run([sys.executable, "-m", "mck", "synth", str(root), "--tiny", "--sessions", "0", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.mark.slow
def test_calibration_step_on_the_tiny_project_matches_ground_truth(tiny_calibration: Path, tmp_path: Path):
    """The tiny preset (320×256, squares of 4–6 px, 120 frames): every camera calibrated, centres within 8 mm
    (figures: docs/algorithms.md, Measured figures), focal lengths within 1 %, RMS < 0.4 px."""
    from mck.calibration_io import load_camera_params

    proc = _mck(["step=calibration", "-m", "calibration=glob(*)"], tiny_calibration, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 done" in proc.stdout
    calib = "20240422_calibration"
    names, ext, intr = load_camera_params(tiny_calibration / calib / f"{calib}.camera_params.h5")
    gt_names, gt_ext, gt_intr = load_camera_params(tiny_calibration / "ground_truth" / "camera_params.h5", names)
    assert names == list(RIG.names)
    centre_error = np.linalg.norm(_centres(ext) - _centres(gt_ext), axis=1)
    focal_error = np.array([abs(K[0, 0] / K0[0, 0] - 1) for (K, _), (K0, _) in zip(intr, gt_intr)])
    assert centre_error.max() < 8.0, centre_error
    assert focal_error.max() < 0.01, focal_error
    for cam in names:
        assert (tiny_calibration / calib / f"{calib}.{cam}.detections.h5").exists()
    assert (tiny_calibration / calib / f"{calib}.residuals.png").exists()
    assert (tiny_calibration / calib / f"{calib}.coverage.png").exists()
    qc = json.loads((tiny_calibration / calib / f"{calib}.calibration_qc.json").read_text())
    assert set(qc["cameras"]) == set(names) and all(c["rms_px"] < 0.5 for c in qc["cameras"].values())
    assert not [w for w in qc["warnings"] if w["check"] in ("sync", "rms", "geometry", "intrinsics")], qc["warnings"]


@pytest.mark.slow
def test_black_calibration_video_is_a_one_line_error_naming_it(tiny_calibration: Path, tmp_path: Path):
    """A calibration video that shows no board (here all black): one line naming the video and what to do."""
    import shutil

    from mck.video import write_video

    data = tmp_path / "data"
    shutil.copytree(tiny_calibration, data, ignore=shutil.ignore_patterns("*.camera_params.h5"))
    calib = "20240422_calibration"
    video = data / calib / f"{calib}.side1.mp4"
    write_video(video, [np.zeros((256, 320), np.uint8)] * 120, fps=30)   # cached detections go stale with it
    proc = _mck(["step=calibration", "-m", "calibration=glob(*)"], data, tmp_path)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mck: error:")]
    assert len(errors) == 1, proc.stderr
    assert f"{calib}.side1.mp4: 0 chessboard detections in 120 frames" in errors[0]
    assert "in full view of that camera" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (data / calib / f"{calib}.camera_params.h5").exists()
