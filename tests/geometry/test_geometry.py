"""Camera model and triangulation: OpenCV parity, round-trips (hypothesis) and robustness."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mck.geometry import (project, project_camera, projection_matrices, rodrigues, rotation_to_rvec, triangulate,
                          triangulate_detailed, undistort_points)
from mck.synth.rig import make_rig

RIG = make_rig()
finite = st.floats(-1.0, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.tuples(finite, finite, finite), st.floats(0.0, 3.1))
def test_rodrigues_round_trip(axis, angle):
    axis = np.array(axis)
    if np.linalg.norm(axis) < 1e-3:
        axis = np.array([0.0, 0.0, 1.0])
    rvec = axis / np.linalg.norm(axis) * angle
    R = rodrigues(rvec)
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.allclose(R, cv2.Rodrigues(rvec)[0], atol=1e-12)
    assert np.allclose(rodrigues(rotation_to_rvec(R)), R, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 5), st.lists(st.tuples(st.floats(-140, 140), st.floats(-140, 140), st.floats(540, 640)),
                                   min_size=1, max_size=20))
def test_projection_matches_opencv_and_undistort_inverts_distort(cam, pts):
    pts = np.array(pts)
    K, dist = RIG.intrinsics[cam]
    ext = RIG.extrinsics[cam]
    ours = project_camera(pts, ext[:3], ext[3:], K, dist)
    theirs = cv2.projectPoints(pts, ext[:3], ext[3:], K, dist)[0][:, 0]
    assert np.allclose(ours, theirs, atol=1e-6)
    ideal = project_camera(pts, ext[:3], ext[3:], K, None)
    assert np.allclose(undistort_points(ours, K, dist), ideal, atol=1e-3)
    assert np.allclose(undistort_points(ours, K, dist),
                       cv2.undistortPoints(ours.reshape(-1, 1, 2), K, dist, P=K)[:, 0], atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-140, 140), st.floats(-140, 140), st.floats(540, 640)), min_size=1,
                max_size=15), st.sampled_from(["robust", "median_dlt"]))
def test_project_then_triangulate_is_identity(pts, method):
    X = np.array(pts)[None]
    uv = project(X, RIG.extrinsics, RIG.intrinsics)
    Y = triangulate(uv, RIG.extrinsics, RIG.intrinsics, method=method)
    assert np.allclose(Y, X, atol=1e-6)


def test_nan_views_and_too_few_views():
    X = np.array([[[0.0, 0.0, 600.0], [50.0, -20.0, 580.0]]])
    uv = project(X, RIG.extrinsics, RIG.intrinsics)
    uv[0, 1:, 0] = np.nan                        # keypoint 0 seen by one camera only
    uv[0, :3, 1] = np.nan                        # keypoint 1 seen by three cameras
    for method in ("robust", "median_dlt"):
        Y = triangulate(uv, RIG.extrinsics, RIG.intrinsics, method=method)
        assert np.isnan(Y[0, 0]).all()
        assert np.allclose(Y[0, 1], X[0, 1], atol=1e-6)


def test_robust_beats_median_dlt_with_outlier_views():
    rng = np.random.default_rng(0)
    X = np.stack([rng.uniform(-140, 140, (400, 15)), rng.uniform(-140, 140, (400, 15)),
                  rng.uniform(540, 640, (400, 15))], -1)
    uv = project(X, RIG.extrinsics, RIG.intrinsics) + rng.normal(0, 1.5, (400, 6, 15, 2))
    gross = rng.random(uv.shape[:3]) < 0.1
    uv[gross] += rng.normal(0, 60, (gross.sum(), 2))
    errs = {}
    for method in ("robust", "median_dlt"):
        e = np.linalg.norm(triangulate(uv, RIG.extrinsics, RIG.intrinsics, method=method) - X, axis=-1)
        errs[method] = (np.median(e), np.percentile(e, 95))
    assert errs["robust"][0] < errs["median_dlt"][0]
    assert errs["robust"][1] < errs["median_dlt"][1] / 2


def test_median_dlt_reproduces_the_lab_per_frame_loop():
    from benchmarks.bench_triangulation import lab_triangulate_frame, make_data

    X, uv = make_data(30, np.random.default_rng(3), RIG)
    ours = triangulate(uv, RIG.extrinsics, RIG.intrinsics, method="median_dlt")
    lab = np.stack([lab_triangulate_frame(uv[f], RIG.extrinsics, RIG.intrinsics) for f in range(30)])
    assert np.allclose(ours, lab, atol=1e-6, equal_nan=True)


def test_detailed_reports_errors_and_views():
    X = np.array([[[10.0, 5.0, 600.0]]])
    uv = project(X, RIG.extrinsics, RIG.intrinsics)
    uv[0, 2, 0] += 80.0                           # one gross outlier view
    res = triangulate_detailed(uv, RIG.extrinsics, RIG.intrinsics)
    assert res.views_used.shape == (1, 6, 1) and not res.views_used[0, 2, 0] and res.views_used[0, [0, 1, 3, 4, 5], 0].all()
    assert res.reprojection_error[0, 2, 0] > 70 and np.nanmax(np.delete(res.reprojection_error[0, :, 0], 2)) < 1e-3
    assert np.allclose(res.points, X, atol=1e-6)


def test_bad_shapes_are_clear():
    with pytest.raises(ValueError, match=r"expected shape \(frames, cameras, keypoints, 2\)"):
        triangulate(np.zeros((6, 15, 2)), RIG.extrinsics, RIG.intrinsics)
    assert projection_matrices(RIG.extrinsics, RIG.intrinsics).shape == (6, 3, 4)
