"""Chessboard detection (anchor-ordered, docs/algorithms.md §A.2) and multi-camera calibration, bundle adjustment (§A.3–A.4).
Pure numpy/scipy/OpenCV: arrays in, arrays out."""

from mck.calibration.calibrate import BundleResult, bundle_adjust, calibrate
from mck.calibration.refine import refine_extrinsics
from mck.calibration.detect import detect_chessboard, detect_chessboard_scored, detect_plain, reorder_chessboard_corners

__all__ = ["BundleResult", "bundle_adjust", "calibrate", "detect_chessboard", "detect_chessboard_scored",
           "detect_plain", "refine_extrinsics", "reorder_chessboard_corners"]
