"""Camera geometry: the lab's camera model (OpenCV pinhole + k1, k2, p1, p2, k3 distortion), projection,
undistortion, and triangulation. Pure numpy, vectorized over frames, cameras and keypoints.

Conventions (see ``mck``): points ``(..., 3)`` mm in the world frame (= top camera frame); extrinsics
``(cameras, 6)`` = Rodrigues rotation vector + translation of the world → camera transform; intrinsics = sequence
of ``(K (3, 3), dist (5,))``; 2D ``(frames, cameras, keypoints, 2)`` pixels, NaN = missing.
"""

from mck.geometry.camera import (
    distort_normalized,
    project,
    project_camera,
    projection_matrices,
    rodrigues,
    rotation_to_rvec,
    undistort_points,
)
from mck.geometry.triangulate import Triangulation, reprojection_errors, triangulate, triangulate_detailed

__all__ = [
    "Triangulation", "distort_normalized", "project", "project_camera", "projection_matrices",
    "reprojection_errors", "rodrigues", "rotation_to_rvec", "triangulate", "triangulate_detailed",
    "undistort_points",
]
