"""Write a complete synthetic project: calibration videos, animal sessions, labels and ground truth.

Layout under OUT::

    OUT/20240422_calibration/20240422_calibration.{camera}.mp4     chessboard videos (6)
    OUT/20240422_J04301/20240422_J04301.{camera}.mp4              animal sessions (6 videos each)
    OUT/20240422_J04302/aligned_frame_numbers.csv                  with --drop-frames (lab format, docs/algorithms.md §B.2)
    OUT/labels/images/{session}/{session}.{camera}.{frame}.jpg    labelled frames (CLAHE, video's frame no.; docs/algorithms.md §D.3)
    OUT/labels/labels.json                                         Scale-AI-style tasks (docs/algorithms.md §D.3)
    OUT/ground_truth/camera_params.h5                              the true cameras (docs/algorithms.md §A.6 layout)
    OUT/ground_truth/{session}.keypoints3d.npy                     (T, 15, 3) mm, HRNet order, per trigger
    OUT/ground_truth/{session}.keypoints2d.npz                     uv (T, 6, 15, 2) distorted px, visible (T, 6, 15),
                                                                   centroid (T, 6, 2), cameras, frames (T, 6) index
                                                                   of each trigger's frame in each video (−1 dropped)
    OUT/ground_truth/{calibration}.board_poses.npz                 rvecs, tvecs (T, 3) board → world
    OUT/ground_truth/{calibration}.board_truth.npz                 uv (T, 6, 35, 2) true corners (distorted px,
                                                                   row-major from the anchor dot), in_view (T, 6),
                                                                   square_px (T, 6) smallest corner spacing,
                                                                   rvecs, tvecs, cameras, realism
    OUT/ground_truth/manifest.json                                 arguments, sessions, timings

Videos are H.264 mp4 (PyAV), grey, like the lab's IR footage. Deterministic in its arguments.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mck.skeleton import KEYPOINT_NAMES
from mck.synth import animal, board, realism, render
from mck.synth.rig import make_rig

DATE = "20240422"
FPS = 30.0


@dataclass(frozen=True)
class Spec:
    out: str
    sessions: int = 2
    frames: int = 600
    calibration_frames: int = 360
    seed: int = 0
    size: tuple[int, int] = (640, 512)
    drop_frames: bool = False
    write_alignment: bool = True     # False: drops happen but no aligned_frame_numbers.csv (undeclared, issue 21)
    labels_per_video: int = 40
    workers: int = 2
    realism: str = "clean"          # calibration footage: clean | realistic | hard (mck.synth.realism)


def session_names(n: int) -> list[str]:
    return [f"{DATE}_J0430{i + 1}" for i in range(n)]


def calibration_name() -> str:
    return f"{DATE}_calibration"


def _background(cam: render.CameraRays, camera: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    width, height = cam.size
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), 6) * 40
    yy, xx = np.mgrid[0:height, 0:width]
    vignette = 1.0 - 0.35 * (((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2) * 4
    base = 45.0 if camera != "bottom" else 35.0
    return (np.clip(base + noise, 5, 120) * vignette).astype(np.float32)


def _noise_bank(seed: int, size: tuple[int, int], n: int = 12, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, sigma, (n, size[1], size[0])).astype(np.float32)


def _animal_video(args) -> dict:
    """Render and encode one animal video; returns visibility (T, 15) and the labelled frames."""
    from mck.video import write_video

    path, rig, cam_index, body, keep, label_frames, seed = args
    name = rig.names[cam_index]
    K, dist = rig.intrinsics[cam_index]
    cam = render.CameraRays(K, dist, rig.extrinsics[cam_index], rig.size)
    background = _background(cam, name, seed)
    rng = np.random.default_rng(seed + 1)
    bank = _noise_bank(seed + 2, rig.size)
    T = len(body.keypoints)
    visible = np.zeros((T, 15), dtype=bool)
    labelled: dict[int, np.ndarray] = {}

    def frames():
        for t in range(T):
            image, depth = render.render_ellipsoids(cam, body.centers[t], body.axes[t], body.albedo, background)
            frame = render.finish(image, rng, noise_bank=bank)
            visible[t] = _visibility(cam, body.keypoints[t], depth)
            if t in label_frames:
                labelled[t] = frame
            if keep[t]:
                yield frame

    n = write_video(path, frames(), FPS, crf=17, preset="ultrafast")
    return {"visible": visible, "labelled": labelled, "written": n}


def _visibility(cam: render.CameraRays, points: np.ndarray, depth: np.ndarray, tol: float = 5.0) -> np.ndarray:
    """Keypoints (K, 3) world mm inside the image and not behind the rendered surface (z-buffer) at their pixel:
    camera depth ≤ surface depth + ``tol`` mm (keypoints sit on the body surface)."""
    z = cam.to_camera(points)[:, 2]
    uv = cam.project(points)
    height, width = depth.shape
    ui = np.round(uv[:, 0]).astype(int)
    vi = np.round(uv[:, 1]).astype(int)
    inside = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height) & (z > 0)
    surface = depth[np.clip(vi, 0, height - 1), np.clip(ui, 0, width - 1)]
    return inside & (z <= surface + tol)


def _board_video(args) -> dict:
    from mck.video import write_video

    path, rig, cam_index, rvecs, tvecs, seed, level = args
    from mck.geometry.camera import rodrigues

    K, dist = rig.intrinsics[cam_index]
    cam = render.CameraRays(K, dist, rig.extrinsics[cam_index], rig.size)
    if level != "clean":
        settings = realism.level(level)
        frames = realism.board_frames(cam, rig.names[cam_index], rvecs, tvecs, settings, seed)
        n = write_video(path, frames, FPS, preset="veryfast", bit_rate=realism.bitrate(settings, rig.size, FPS))
        return {"written": n}
    background = _background(cam, rig.names[cam_index], seed)
    rng = np.random.default_rng(seed + 1)
    bank = _noise_bank(seed + 2, rig.size, sigma=4.0)
    rots = rodrigues(rvecs)
    width, height = rig.size
    gx = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    gy = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    extent = board.paper_extent()

    def frames():
        for t in range(len(rvecs)):
            image = render.render_plane(cam, tvecs[t], rots[t][:, 0], rots[t][:, 1], board.texture, background,
                                        supersample=2, extent=extent)
            # uneven lighting: a soft gradient that moves with time; mild blur and noise in finish()
            angle = 0.3 * t
            light = np.float32(0.75) + np.float32(0.35) * (np.float32(np.cos(angle)) * gx
                                                          + np.float32(np.sin(angle)) * gy)
            yield render.finish(image * light, rng, blur=0.8, noise_bank=bank)

    n = write_video(path, frames(), FPS, crf=17, preset="ultrafast")
    return {"written": n}


def board_truth(rig, rvecs: np.ndarray, tvecs: np.ndarray) -> dict[str, np.ndarray]:
    """Ground truth of a calibration video set: ``uv`` (T, C, 35, 2) true corners (distorted px, the anchor dot's
    order), ``in_view`` (T, C) every corner inside the image and in front of the camera, ``square_px`` (T, C) the
    smallest mean corner spacing along rows or columns (px), ``rvecs``/``tvecs`` board → world, ``cameras``."""
    from mck.geometry import project
    from mck.geometry.camera import rodrigues

    R = rodrigues(rvecs)
    world = np.einsum("fij,nj->fni", R, board.object_points()) + tvecs[:, None]
    uv = project(world, rig.extrinsics, rig.intrinsics)                         # (T, C, 35, 2)
    width, height = rig.size
    Rc = rodrigues(rig.extrinsics[:, :3])
    z = np.einsum("cij,fnj->fcni", Rc, world)[..., 2] + rig.extrinsics[None, :, None, 5]
    in_view = ((uv[..., 0] >= 0) & (uv[..., 0] <= width - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= height - 1)
               & (z > 0)).all(-1)
    cols, rows = board.BOARD_SHAPE
    G = uv.reshape(*uv.shape[:2], rows, cols, 2)
    a = np.linalg.norm(np.diff(G, axis=2), axis=-1).mean((-1, -2))
    b = np.linalg.norm(np.diff(G, axis=3), axis=-1).mean((-1, -2))
    return {"uv": uv, "in_view": in_view, "square_px": np.minimum(a, b), "rvecs": rvecs, "tvecs": tvecs,
            "cameras": np.array(rig.names)}


def write_project(spec: Spec, progress: bool = True) -> dict:
    """Generate the project described by ``spec``; returns the manifest."""
    from tqdm import tqdm

    from mck.calibration_io import save_camera_params
    from mck.geometry import project
    from mck.io import save_json, save_npy

    started = time.time()
    out = Path(spec.out)
    gt = out / "ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    rig = make_rig(spec.size, spec.seed)
    save_camera_params(gt / "camera_params.h5", rig.names, rig.extrinsics, rig.intrinsics)
    rng = np.random.default_rng(spec.seed)
    jobs, kinds = [], []
    # calibration session
    calib = calibration_name()
    settings = realism.level(spec.realism)
    rvecs, tvecs = board.board_poses(spec.calibration_frames, np.random.default_rng(spec.seed + 101), rig=rig,
                                     keyframe_every=settings.keyframe_every,
                                     max_incidence_deg=settings.max_incidence_deg, tilt_deg=settings.tilt_deg)
    np.savez(gt / f"{calib}.board_poses.npz", rvecs=rvecs, tvecs=tvecs)
    np.savez(gt / f"{calib}.board_truth.npz", **board_truth(rig, rvecs, tvecs), realism=spec.realism)
    (out / calib).mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(rig.names):
        jobs.append((_board_video, (str(out / calib / f"{calib}.{name}.mp4"), rig, c, rvecs, tvecs,
                                    spec.seed * 1000 + 500 + c, spec.realism)))
        kinds.append(("calibration", calib, name))
    # animal sessions
    sessions = session_names(spec.sessions)
    bodies, keeps, label_sets = {}, {}, {}
    for s, session in enumerate(sessions):
        traj = animal.trajectory(spec.frames, np.random.default_rng(spec.seed * 100 + s))
        body = animal.make_body(traj)
        bodies[session] = body
        (out / session).mkdir(parents=True, exist_ok=True)
        keep = np.ones((len(rig.names), spec.frames), dtype=bool)
        if spec.drop_frames and s == len(sessions) - 1:
            dropped = rng.choice(np.arange(5, spec.frames - 5), size=max(1, spec.frames // 100), replace=False)
            keep[2, dropped] = False                     # side2 of the last session drops a few frames
        keeps[session] = keep
        n_labels = min(spec.labels_per_video, spec.frames)
        for c, name in enumerate(rig.names):
            label_frames = set(np.linspace(0, spec.frames - 1, n_labels).astype(int).tolist())
            label_frames = {f for f in label_frames if keep[c, f]}
            label_sets[(session, name)] = label_frames
            jobs.append((_animal_video, (str(out / session / f"{session}.{name}.mp4"), rig, c, body, keep[c],
                                         label_frames, spec.seed * 1000 + 100 * s + c)))
            kinds.append(("session", session, name))
    results = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="synth videos", unit="video", disable=not progress)
    if spec.workers > 1:
        with ProcessPoolExecutor(max_workers=spec.workers) as pool:
            futures = [pool.submit(fn, args) for fn, args in jobs]
            for i, fut in enumerate(futures):
                results[i] = fut.result()
                bar.update()
    else:
        for i, (fn, args) in enumerate(jobs):
            results[i] = fn(args)
            bar.update()
    bar.close()
    # ground truth and labels
    tasks = []
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(32, 32))
    for session in sessions:
        body = bodies[session]
        kp3d = body.keypoints
        save_npy(gt / f"{session}.keypoints3d.npy", kp3d)
        uv = project(kp3d, rig.extrinsics, rig.intrinsics)
        visible = np.stack([results[i]["visible"] for i, k in enumerate(kinds) if k[:2] == ("session", session)], 1)
        keep = keeps[session]
        frame_index = np.where(keep.T, np.cumsum(keep.T, axis=0) - 1, -1)
        centroid = np.median(uv, axis=2)
        np.savez(gt / f"{session}.keypoints2d.npz", uv=uv, visible=visible, centroid=centroid,
                 cameras=np.array(rig.names), frames=frame_index)
        if not keep.all() and spec.write_alignment:
            _write_alignment(out / session / "aligned_frame_numbers.csv", rig.names, frame_index)
        image_dir = out / "labels" / "images" / session
        image_dir.mkdir(parents=True, exist_ok=True)
        for i, (kind, sess, cam) in enumerate(kinds):
            if kind != "session" or sess != session:
                continue
            c = rig.names.index(cam)
            for t, frame in sorted(results[i]["labelled"].items()):
                if frame_index[t, c] < 0:
                    continue  # dropped: not in the video, so not labelled either
                filename = f"{session}.{cam}.{frame_index[t, c]}.jpg"  # the video's frame number, as the lab's
                img = cv2.cvtColor(clahe.apply(frame), cv2.COLOR_GRAY2BGR)
                cv2.imwrite(str(image_dir / filename), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
                annotations = [{"label": KEYPOINT_NAMES[k], "x": float(uv[t, c, k, 0]), "y": float(uv[t, c, k, 1])}
                               for k in range(15) if visible[t, c, k]]
                tasks.append({"task_id": f"{session}.{cam}.{t}",
                              "params": {"geometries": {"point": {"objects_to_annotate": list(KEYPOINT_NAMES)}}},
                              "metadata": {"filename": filename},
                              "response": {"annotations": annotations}})
    save_json(out / "labels" / "labels.json", tasks)
    manifest = {"args": {**spec.__dict__, "size": list(spec.size)}, "calibration": calib, "sessions": sessions,
                "cameras": list(rig.names), "labelled_images": len(tasks), "seconds": round(time.time() - started, 1)}
    save_json(gt / "manifest.json", manifest)
    return manifest


def _write_alignment(path: Path, cameras, frame_index: np.ndarray) -> None:
    """aligned_frame_numbers.csv (docs/algorithms.md §B.2): a row per trigger, each camera's frame number or empty if dropped."""
    from mck.io import atomic_path

    lines = [",".join(["trigger_number", *cameras])]
    for t, row in enumerate(frame_index):
        lines.append(",".join([str(t)] + ["" if v < 0 else str(int(v)) for v in row]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
