"""Step ``export`` (session level): the session's keypoints in community formats.

``{session}.nwb`` (primary output) — NWB with the ndx-pose extension: one ``CalibratedCamera`` device per camera
(K, R, t, distortion from camera_params.h5), a ``PoseEstimation`` per camera with the 2D HRNet detections (px) and
their confidences, and 3D ``PoseEstimation`` objects ``triangulation`` and (if present) ``gimbal`` in mm, all in
``processing/behavior`` with the mouse ``Skeleton``.

``{session}.kpms.nwb`` — what keypoint-moseq's ``load_keypoints(path, "nwb")`` reads directly: an NWB file with
exactly one ``PoseEstimation`` (its loader refuses more), the 3D keypoints (GIMBAL if present, else triangulation)
with a confidence per keypoint and frame and the bodypart names as the skeleton's nodes.
3D confidence = mean HRNet confidence over the cameras (NaN detections count as 0); 0 where the 3D point is NaN.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path

import numpy as np

from mck.errors import InputError
from mck.io import atomic_path
from mck.skeleton import EDGES, KEYPOINT_NAMES, MOUSE
from mck.session_data import load_session_2d, video_fps
from mck.skeleton import gimbal_to_hrnet


def _skeleton(name: str, names: list[str], subject=None):
    from ndx_pose import Skeleton

    index = {n: i for i, n in enumerate(names)}
    edges = np.array([[index[a], index[b]] for a, b in EDGES if a in index and b in index], dtype="uint8")
    return Skeleton(name=name, nodes=list(names), edges=edges, subject=subject)


def _series(names: list[str], data: np.ndarray, conf: np.ndarray, rate: float, unit: str, frame: str):
    from ndx_pose import PoseEstimationSeries

    return [PoseEstimationSeries(name=n, description=f"{n} ({unit})", data=np.asarray(data[:, k], np.float64),
                                 unit=unit, reference_frame=frame, rate=float(rate),
                                 confidence=np.asarray(conf[:, k], np.float64),
                                 confidence_definition="HRNet heatmap peak (0–1)" if unit == "pixels" else
                                 "mean HRNet confidence over the cameras (0–1)")
            for k, n in enumerate(names)]


def _new_file(session: str, description: str):
    from pynwb import NWBFile
    from pynwb.file import Subject

    start = _dt.datetime.now(_dt.timezone.utc)
    try:
        start = _dt.datetime.strptime(session[:8], "%Y%m%d").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        pass
    nwb = NWBFile(session_description=description, identifier=f"mck-{session}", session_start_time=start,
                  session_id=session)
    nwb.subject = Subject(subject_id=session.split("_")[-1] if "_" in session else session, species="Mus musculus")
    return nwb


def confidence_3d(conf2d: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """Per frame × keypoint: mean of the cameras' confidences (NaN → 0); 0 where the 3D point is missing."""
    if conf2d is None:
        out = np.ones(points.shape[:2])
    else:
        T = min(len(conf2d), len(points))
        out = np.zeros(points.shape[:2])
        out[:T] = np.nan_to_num(conf2d[:T], nan=0.0).mean(axis=1)
    out[np.isnan(points).any(axis=-1)] = 0.0
    return out


def write_nwb(path: str, session: str, cameras: list[str], uv, conf, points: dict[str, np.ndarray], cal, fps: float,
              videos: dict | None = None) -> None:
    """The full export (see module docstring), atomically."""
    from ndx_pose import CalibratedCamera, PoseEstimation, Skeletons
    from pynwb import NWBHDF5IO

    from mck.geometry.camera import rodrigues

    nwb = _new_file(session, "mck 6-camera mouse keypoints: 2D detections per camera and 3D keypoints")
    behavior = nwb.create_processing_module(name="behavior", description="pose estimation (mck)")
    names = list(KEYPOINT_NAMES)
    skeleton = _skeleton("mouse", names, nwb.subject)
    gimbal_names = list(MOUSE.names)
    skeletons = [skeleton]
    if "gimbal" in points:
        skeletons.append(_skeleton("mouse_gimbal", gimbal_names, nwb.subject))
    behavior.add(Skeletons(skeletons=skeletons))
    devices = {}
    for c, cam in enumerate(cameras):
        if cal is not None:
            _, ext, intr = cal
            K, dist = intr[c]
            dev = CalibratedCamera(name=cam, intrinsic_matrix=np.asarray(K, float),
                                   rotation_matrix=rodrigues(ext[c, :3]), translation_vector=ext[c, 3:],
                                   distortion_coefficients=np.asarray(dist, float).ravel(),
                                   description=f"camera {cam}; world = top camera frame, mm")
        else:
            from pynwb.device import Device

            dev = Device(name=cam, description=f"camera {cam} (uncalibrated)")
        nwb.add_device(dev)
        devices[cam] = dev
        if uv is not None:
            behavior.add(PoseEstimation(
                name=f"PoseEstimation2D_{cam}", pose_estimation_series=_series(names, uv[:, c], conf[:, c], fps,
                                                                              "pixels", f"image of camera {cam}, "
                                                                              "distorted px, origin top-left"),
                description=f"HRNet 2D keypoints, camera {cam}", scorer="HRNet", source_software="mck",
                skeleton=skeleton, device=dev))
    for source, pts in points.items():
        node_names = gimbal_names if source == "gimbal" else names
        data = pts
        behavior.add(PoseEstimation(
            name=f"PoseEstimation3D_{source}",
            pose_estimation_series=_series(node_names, data, confidence_3d(
                None if conf is None else (_gimbal_conf(conf) if source == "gimbal" else conf), data), fps, "mm",
                                           "world = top camera frame, mm"),
            description=f"3D keypoints from {source}", scorer=source, source_software="mck",
            skeleton=skeletons[1] if source == "gimbal" else skeleton))
    with atomic_path(path) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)


def write_kpms_nwb(path: str, session: str, names: list[str], points: np.ndarray, conf3d: np.ndarray,
                   fps: float) -> None:
    """The keypoint-moseq file: one PoseEstimation, 3D (mm), per-keypoint confidences, nodes = bodyparts."""
    from ndx_pose import PoseEstimation, Skeletons
    from pynwb import NWBHDF5IO

    nwb = _new_file(session, "mck 3D keypoints for keypoint-moseq")
    behavior = nwb.create_processing_module(name="behavior", description="pose estimation (mck)")
    skeleton = _skeleton("mouse", names, nwb.subject)
    behavior.add(Skeletons(skeletons=[skeleton]))
    behavior.add(PoseEstimation(name="PoseEstimation", pose_estimation_series=_series(
        names, points, conf3d, fps, "mm", "world = top camera frame, mm"), description="3D keypoints (mck)",
        scorer="mck", source_software="mck", skeleton=skeleton))
    with atomic_path(path) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)


def run(session_name: str, keypoints_paths: dict, triangulation_path: str, calibration_path: str | None,
        output_path: str, output_paths: list | None = None, gimbal_path: str | None = None,
        gimbal_obs_path: str | None = None, videos: dict | None = None, alignment_path: str | None = None,
        fps: float | None = None,
        kpms: bool = True, item: str = "", log: logging.Logger | None = None) -> dict:
    """Write ``{session}.nwb`` and ``{session}.kpms.nwb`` from the session's keypoints and 3D files."""
    item = item or session_name
    uv, conf, cameras = load_session_2d(keypoints_paths, alignment_path)
    n_cameras = 0 if uv is None else int(np.isfinite(uv).any(axis=(0, 2, 3)).sum())
    points: dict[str, np.ndarray] = {}
    tri_path, gim_path = triangulation_path, gimbal_path
    if tri_path and os.path.isfile(tri_path):
        points["triangulation"] = np.load(tri_path).astype(float)
    if gim_path and os.path.isfile(gim_path):
        points["gimbal"] = np.load(gim_path).astype(float)  # node order (MOUSE.names)
    if "triangulation" not in points:
        raise InputError("no 3D keypoints to export", item=item, path=tri_path, fix="run step=triangulation first")
    cal = None
    if calibration_path and os.path.isfile(calibration_path):
        from mck.calibration_io import load_camera_params

        cal = load_camera_params(calibration_path, cameras)
    if fps is None:
        fps = video_fps(videos or {})
    write_nwb(output_path, session_name, cameras, uv, conf, points, cal, fps, videos)
    out = {"nframes": int(len(points["triangulation"])), "cameras": n_cameras, "sources_3d": sorted(points)}
    if kpms:
        if "gimbal" in points:
            names, pts = list(MOUSE.names), points["gimbal"]
            conf3d = confidence_3d(None if conf is None else _gimbal_conf(conf), pts)
            if gimbal_obs_path and os.path.isfile(gimbal_obs_path):
                counts = np.load(gimbal_obs_path)                # (T, 14): 0 = the prior's extrapolation
                if counts.shape == conf3d.shape:
                    conf3d = np.where(counts > 0, conf3d, 0.0)
                    out["gimbal_unobserved_frames"] = int((~(counts > 0).any(axis=1)).sum())
        else:
            names, pts = list(KEYPOINT_NAMES), points["triangulation"]
            conf3d = confidence_3d(conf, pts)
        kpath = str(output_paths[1]) if output_paths and len(output_paths) > 1 else \
            str(Path(output_path).with_name(f"{session_name}.kpms.nwb"))
        write_kpms_nwb(kpath, session_name, names, pts, conf3d, fps)
        out["kpms"] = kpath
    if log:
        log.info("%s: exported %s", item, out)
    return out


def _gimbal_conf(conf: np.ndarray) -> np.ndarray:
    """HRNet-order confidences ``(T, C, 15)`` → node order ``(T, C, 14)``."""
    idx = [KEYPOINT_NAMES.index(MOUSE.bodyparts[i]) for i in MOUSE.node_order]
    return conf[..., idx]


__all__ = ["run", "write_nwb", "write_kpms_nwb", "confidence_3d", "gimbal_to_hrnet"]
