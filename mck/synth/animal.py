"""A mouse-sized animal moving smoothly in the arena: trajectory (walking, turning, rearing), the 15 keypoints
(HRNet order, docs/algorithms.md §C.1) and the body primitives (ellipsoids) it renders. Millimetres, world frame (z down)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from mck.synth.rig import ARENA_RADIUS, FLOOR_Z

FPS = 30.0
UP = np.array([0.0, 0.0, -1.0])


@dataclass
class Body:
    """Per frame: ``keypoints`` (T, 15, 3) mm; primitives: ``centers`` (T, P, 3), ``axes`` (T, P, 3, 3) (rows =
    the semi-axes as vectors, mm), ``albedo`` (P,) grey level 0–255."""

    keypoints: np.ndarray
    centers: np.ndarray
    axes: np.ndarray
    albedo: np.ndarray


def _smooth_noise(rng: np.random.Generator, n: int, sigma_frames: float, scale: float) -> np.ndarray:
    x = gaussian_filter1d(rng.normal(size=n + 200), sigma_frames, mode="wrap")[100:-100]
    return x / (x.std() + 1e-12) * scale


def trajectory(frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Smooth random walk inside the arena: position (T, 2), heading (T,), speed (T,) mm/s, rear (T,) in [0, 1],
    gait phase (T,), head yaw (T,), tail wag (T,)."""
    dt = 1.0 / FPS
    speed = np.clip(70.0 + _smooth_noise(rng, frames, 20, 45.0), 0.0, 160.0)
    turn = _smooth_noise(rng, frames, 12, 1.6)
    pos = np.zeros((frames, 2))
    heading = np.zeros(frames)
    pos[0] = rng.uniform(-60, 60, 2)
    heading[0] = rng.uniform(-np.pi, np.pi)
    for t in range(1, frames):  # integrating a path: sequential by nature, tiny per-step work
        to_center = -pos[t - 1]
        r = np.linalg.norm(pos[t - 1])
        steer = 0.0
        if r > ARENA_RADIUS * 0.55:
            desired = np.arctan2(to_center[1], to_center[0])
            steer = 3.0 * np.sin(desired - heading[t - 1]) * (r - ARENA_RADIUS * 0.55) / 40.0
        heading[t] = heading[t - 1] + (turn[t] + steer) * dt
        step = speed[t] * dt * np.array([np.cos(heading[t]), np.sin(heading[t])])
        pos[t] = pos[t - 1] + step
    rear = np.zeros(frames)
    for _ in range(frames // 250):
        center = rng.uniform(0.1, 0.9) * frames
        width = rng.uniform(12, 30)
        rear += np.exp(-0.5 * ((np.arange(frames) - center) / width) ** 2)
    rear = np.clip(rear, 0, 1)
    speed = speed * (1 - 0.8 * rear)
    phase = np.cumsum(2 * np.pi * speed * dt / 45.0)
    return {"pos": pos, "heading": heading, "speed": speed, "rear": rear, "phase": phase,
            "head_yaw": _smooth_noise(rng, frames, 8, 0.25), "wag": _smooth_noise(rng, frames, 6, 0.35)}


def _frame_axes(heading: np.ndarray, pitch: np.ndarray):
    """Forward, left and up unit vectors (T, 3) of a body pitched up by ``pitch`` rad."""
    f = np.stack([np.cos(heading), np.sin(heading), np.zeros_like(heading)], -1)
    left = np.cross(UP, f)
    fp = np.cos(pitch)[:, None] * f + np.sin(pitch)[:, None] * UP
    up = np.cross(fp, left)
    return f, left, fp, up


def make_body(traj: dict[str, np.ndarray]) -> Body:
    """Keypoints and ellipsoids of the animal for every frame."""
    T = len(traj["heading"])
    pitch = np.deg2rad(65.0) * traj["rear"]
    f, left, fp, up = _frame_axes(traj["heading"], pitch)
    head_dir = np.cos(traj["head_yaw"])[:, None] * fp + np.sin(traj["head_yaw"])[:, None] * left
    ground = np.concatenate([traj["pos"], np.full((T, 1), FLOOR_Z)], axis=1)
    hip = ground + 24.0 * UP                                       # spine_low level (centre of the haunch)
    c = lambda a: a[:, None]                                        # noqa: E731
    hind_c = hip + 4.0 * f
    front_c = hip + 30.0 * fp
    spine_high = hip + 50.0 * fp + 8.0 * up
    head_c = spine_high + 16.0 * head_dir + 2.0 * up
    kp = np.zeros((T, 15, 3))
    kp[:, 1] = hip - 27.5 * f + 2.0 * UP                            # tail_base (just behind the haunch)
    kp[:, 2] = hip + 13.0 * UP                                      # spine_low (top of the haunch)
    kp[:, 3] = hip + 26.0 * fp + 12.5 * up                          # spine_mid
    kp[:, 4] = spine_high + 8.0 * up                                # spine_high
    kp[:, 5] = head_c - 3.0 * head_dir + 8.0 * left + 8.0 * up      # left_ear
    kp[:, 6] = head_c - 3.0 * head_dir - 8.0 * left + 8.0 * up      # right_ear
    kp[:, 7] = head_c + 6.0 * head_dir + 7.5 * up                   # forehead
    kp[:, 8] = head_c + 17.5 * head_dir                             # nose_tip
    swing = np.sin(traj["phase"])
    stride = 9.0 * np.clip(traj["speed"] / 80.0, 0, 1.2)
    lift = lambda s: np.clip(s, 0, None) * 4.0                      # noqa: E731
    for side, sign, sw in (("left", 1.0, swing), ("right", -1.0, -swing)):
        back = ground + (-8.0 + c(stride * sw)) * f + sign * 13.0 * left + c(3.0 + lift(sw)) * UP
        front = back + 9.0 * f
        i_front, i_back = (9, 10) if side == "left" else (11, 12)
        kp[:, i_front], kp[:, i_back] = front, back
        fore_ground = ground + (36.0 - c(stride * sw)) * f + sign * 11.0 * left + c(3.0 + lift(-sw)) * UP
        fore_reared = hip + 40.0 * fp + sign * 10.0 * left - 6.0 * up
        r = c(traj["rear"])
        kp[:, 13 if side == "left" else 14] = (1 - r) * fore_ground + r * fore_reared
    # tail: a wagging curve behind the tail base
    tail_points = []
    direction = -f
    point = kp[:, 1].copy()
    for i in range(8):
        bend = traj["wag"] * (i + 1) / 8.0
        d = np.cos(bend)[:, None] * direction + np.sin(bend)[:, None] * left
        d = d + 0.04 * UP * (i < 2)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        point = point + 11.0 * d
        if i < 2:
            point = point - 0.0 * UP
        point[:, 2] = np.minimum(point[:, 2], FLOOR_Z - 2.5)
        tail_points.append(point.copy())
    kp[:, 0] = tail_points[-1]                                      # tail_tip

    prims_c, prims_a, albedo = [], [], []

    def ellipsoid(center, a_dir, b_dir, radii, grey):
        a_dir = a_dir / np.linalg.norm(a_dir, axis=1, keepdims=True)
        b_dir = b_dir - np.sum(b_dir * a_dir, 1, keepdims=True) * a_dir
        b_dir = b_dir / np.linalg.norm(b_dir, axis=1, keepdims=True)
        c_dir = np.cross(a_dir, b_dir)
        prims_c.append(center)
        prims_a.append(np.stack([a_dir * radii[0], b_dir * radii[1], c_dir * radii[2]], axis=1))
        albedo.append(grey)

    ellipsoid(hind_c, f, left, (30.0, 17.0, 13.5), 205)
    ellipsoid(front_c, fp, left, (24.0, 13.0, 12.0), 210)
    ellipsoid(head_c, head_dir, left, (18.0, 10.0, 8.5), 215)
    for ear in (kp[:, 5], kp[:, 6]):
        ellipsoid(ear - 2.0 * up, head_dir, left, (3.0, 5.0, 5.0), 180)
    for i, p in enumerate(tail_points):
        radius = 4.0 - 2.6 * i / 7
        ellipsoid(p, f, left, (6.5, radius, radius), 165)
    limb_tops = [hip + 8.0 * f + 10.0 * left, hip + 8.0 * f - 10.0 * left, hip + 36.0 * fp + 9.0 * left,
                 hip + 36.0 * fp - 9.0 * left]
    paws = [(kp[:, 9] + kp[:, 10]) / 2, (kp[:, 11] + kp[:, 12]) / 2, kp[:, 13], kp[:, 14]]
    for top, paw in zip(limb_tops, paws):
        axis = paw - top
        length = np.linalg.norm(axis, axis=1)
        ellipsoid((top + paw) / 2, axis, left, (1.0, 4.0, 4.0), 190)
        prims_a[-1][:, 0] *= (length / 2 + 2.0)[:, None]
        ellipsoid(paw, f, left, (5.5, 3.5, 2.5), 225)
    return Body(kp, np.stack(prims_c, 1), np.stack(prims_a, 1), np.array(albedo, dtype=float))
