"""mck — synchronized multi-camera videos of a freely moving mouse → clean 3D keypoints.

Array conventions, used by every module:

* 2D keypoints ``uv``: ``(frames, cameras, keypoints, 2)`` float, ``(u, v) = (column, row)`` in **pixels** of the
  (distorted) video frame unless a name says ``undistorted``. Missing = NaN.
* confidences ``conf``: ``(frames, cameras, keypoints)`` in [0, 1].
* 3D keypoints: ``(frames, keypoints, 3)`` float, **millimetres**, world frame = the root (``top``) camera's frame
  (x = image right, y = image down, z = optical axis) unless a floor alignment is configured. Missing = NaN.
* extrinsics: ``(cameras, 6)`` = Rodrigues rotation vector + translation of the world → camera transform, mm.
* intrinsics: per camera ``(K (3, 3), dist (5,))`` in OpenCV order ``(k1, k2, p1, p2, k3)``.
* cameras are in the project's configured order (default ``top, side1, side2, side3, side4, bottom``).

Layers point one way: pure cores (``geometry``, ``calibration``, ``detection``, ``gimbal``, ``synth``) ← ``io`` and
``video`` ← ``steps`` ← ``compile`` / ``launch`` / ``app``. A core never imports Hydra, submitit, h5py or a path.
"""

__version__ = "0.1.0"
