"""Reliability through the real entry point: kill -9 and resume, bad inputs, raw videos untouched, determinism,
traceability. Runs on a synthetic project whose detections are ground truth + noise (no network training), plus
small random-weight networks for the hrnet kill test."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import REPO, run_mck
from tests.gimbal.project import SESSIONS, make_detected_project

pytestmark = pytest.mark.slow
GIMBAL_FAST = ["step.func_kwargs.n_iters=160", "step.func_kwargs.burn_in=80", "step.func_kwargs.checkpoint_every=10"]
HRNET_FAST = ["step.func_kwargs.batch_size=2", "step.func_kwargs.save_every=4", "step.func_kwargs.crop_size=128"]


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.mp4"))}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability")
    root = make_detected_project(base / "data")
    cwd = base / "cwd"
    cwd.mkdir()
    videos = checksums(root)
    run_mck(["step=triangulation", "-m", "session=glob(*)"], root, cwd, check=True)
    run_mck(["step=fit_gimbal", "step.func_kwargs.num_states=4", "step.func_kwargs.num_iters=50"], root, cwd,
            check=True)
    yield root, cwd
    assert checksums(root) == videos, "raw videos changed"          # item 3: after everything in this module


def start_mck(args: list[str], root: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "MCK_DATA_ROOT": str(root)}
    env.pop("MCK_ITEMS_URL", None)
    return subprocess.Popen([sys.executable, "-m", "mck", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def kill9_when(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """SIGKILL the whole process group as soon as ``path`` (a checkpoint) exists."""
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before a checkpoint appeared:\n{proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"no checkpoint {path.name} after {timeout} s")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def last_record(root: Path, step: str, output: str, item: str) -> dict:
    return json.loads((root / ".mck" / "records" / step / output / f"{item}.json").read_text())


def test_kill9_mid_gimbal_resumes_to_byte_identical_outputs(project):
    root, cwd = project
    session = SESSIONS[1]
    outputs = [root / session / f"{session}.gimbal.npy", root / session / f"{session}.ll.npy"]
    args = ["step=gimbal", *GIMBAL_FAST, f"session={session}"]
    run_mck(args, root, cwd, check=True)
    reference = [p.read_bytes() for p in outputs]
    for p in outputs:
        p.unlink()
    proc = start_mck(args, root, cwd)
    ckpt = Path(str(outputs[0]) + ".checkpoint.npz")
    kill9_when(ckpt, proc)
    assert not any(p.exists() for p in outputs) and ckpt.exists()
    time.sleep(1.0)                                             # let the killed job's checkpoint advance no further
    run_mck(args, root, cwd, check=True)
    assert [p.read_bytes() for p in outputs] == reference       # items 1 and 5: byte-identical, seeded
    record = last_record(root, "gimbal", "gimbal.npy", session)
    assert record["state"] == "done" and record["metrics"]["resumed_at"] > 0, record
    assert not ckpt.exists()


def test_every_output_traces_to_its_record_and_rerun_reproduces_it(project):
    root, cwd = project
    session = SESSIONS[0]
    output = root / session / f"{session}.gimbal.npy"
    run_mck(["step=gimbal", *GIMBAL_FAST, f"session={session}"], root, cwd, check=True)
    record = last_record(root, "gimbal", "gimbal.npy", session)
    assert str(output) in record["outputs"]
    run_dir = Path(record["run_dir"])
    assert (run_dir / ".hydra" / "config.yaml").is_file() or (run_dir / "config.resolved.yaml").is_file()
    before = output.read_bytes()
    output.unlink()
    run_mck(["rerun", str(run_dir)], None, cwd, check=True)
    assert output.read_bytes() == before


def _hrnet_project(base: Path) -> Path:
    import torch

    from mck.detection.hrnet import HRNet
    from mck.synth import load_ground_truth

    root = base / "hr"
    subprocess.run([sys.executable, "-m", "mck", "synth", str(root), "--tiny", "--frames", "48"], check=True,
                   capture_output=True)
    session = next(p.name for p in root.iterdir() if p.name.startswith("2024") and "calib" not in p.name)
    gt = load_ground_truth(root, session)
    for c, cam in enumerate(gt["cameras"]):
        cam = cam.decode() if isinstance(cam, bytes) else str(cam)
        np.save(root / session / f"{session}.{cam}.centroid.npy", np.rint(gt["centroid"][:, c]).astype(np.int64))
    (root / "weights").mkdir()
    torch.manual_seed(0)
    for view in ("top", "side", "bottom"):
        torch.save(HRNet(c=8, stem_width=16).state_dict(), root / "weights" / f"hrnet_{view}.pth")
    return root


def test_kill9_mid_hrnet_resumes_to_identical_keypoints(tmp_path):
    root = _hrnet_project(tmp_path)
    session = next(p.name for p in root.iterdir() if p.name.startswith("2024") and "calib" not in p.name)
    video = f"{session}.side1"
    output = root / session / f"{video}.keypoints.h5"
    args = ["step=hrnet", *HRNET_FAST, f"video={video}"]
    run_mck(args, root, tmp_path, check=True)
    with h5py.File(output) as f:
        reference = {k: f[k][()] for k in ("uv", "conf")}
    output.unlink()
    proc = start_mck(args, root, tmp_path)
    ckpt = Path(str(output) + ".checkpoint.npz")
    kill9_when(ckpt, proc)
    assert not output.exists()
    run_mck(args, root, tmp_path, check=True)
    with h5py.File(output) as f:
        for k, v in reference.items():
            assert np.array_equal(f[k][()], v), k
    record = last_record(root, "hrnet", "keypoints.h5", video)
    assert record["metrics"]["resumed_from"] > 0, record


def test_wrong_weights_shapes_is_one_line_naming_the_file(tmp_path):
    import torch

    from mck.detection.centernet import ConvNet

    root = _hrnet_project(tmp_path)
    torch.save(ConvNet(4).state_dict(), root / "weights" / "hrnet_top.pth")    # a CenterNet where HRNet belongs
    session = next(p.name for p in root.iterdir() if p.name.startswith("2024") and "calib" not in p.name)
    proc = run_mck(["step=hrnet", *HRNET_FAST, "-m", "video=glob(*top)"], root, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "hrnet_top.pth" in proc.stderr and f"{session}.top" in proc.stderr
    assert not (root / session / f"{session}.top.keypoints.h5").exists()


def test_bad_inputs_fail_one_item_with_one_line(project, tmp_path):
    """All-NaN keypoints, a calibration without one of the cameras, an unreadable gimbal_params.p."""
    root, cwd = project
    work = tmp_path / "copy"
    shutil.copytree(root, work, ignore=shutil.ignore_patterns(".mck"))
    (work / "weights" / "gimbal_params.p").write_bytes(b"\x00garbage")
    proc = run_mck(["step=gimbal", *GIMBAL_FAST, "overwrite=true", f"session={SESSIONS[0]}"], work, cwd)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "gimbal_params.p" in proc.stderr and "fit_gimbal" in proc.stderr, proc.stderr
    for p in work.rglob("*.robust_triangulation.npy"):
        p.unlink()
    victim = SESSIONS[0]
    for cam in ("top", "side1", "side2", "side3", "side4", "bottom"):
        with h5py.File(work / victim / f"{victim}.{cam}.keypoints.h5", "r+") as f:
            f["uv"][...] = np.nan
            f["conf"][...] = np.nan
    proc = run_mck(["step=triangulation", "-m", "session=glob(*)"], work, cwd)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert victim in proc.stderr and "1 failed" in proc.stdout and "1 done" in proc.stdout
    assert not (work / victim / f"{victim}.robust_triangulation.npy").exists()
    assert (work / SESSIONS[1] / f"{SESSIONS[1]}.robust_triangulation.npy").exists()

    from mck.calibration_io import load_camera_params, save_camera_params

    calib = next(p for p in work.iterdir() if "calib" in p.name)
    params_file = calib / f"{calib.name}.camera_params.h5"
    names, ext, intr = load_camera_params(params_file)
    keep = [i for i, n in enumerate(names) if n != "side3"]
    save_camera_params(params_file, [names[i] for i in keep], ext[keep], [intr[i] for i in keep])
    for p in work.rglob("*.robust_triangulation.npy"):
        p.unlink()
    proc = run_mck(["step=triangulation", f"session={SESSIONS[1]}"], work, cwd)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "side3" in proc.stderr and calib.name in proc.stderr

