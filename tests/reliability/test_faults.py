"""The fault catalogue (issue 19): every bad input or fault ends in one line ``mck: error: <item>: <what> (<fix>)``
(or a recorded warning where the result is still usable), recorded so that ``status`` shows it, nothing
half-written, and a normal re-run recovers. One test per fault; the faults already covered elsewhere are listed at
the end of this module with the test that covers them.

Runs on one tiny synthetic project (40 frames, detections = ground truth + noise, no networks) made once per
module; each test works on its own copy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import run_mck, status_json
from tests.gimbal.project import SESSIONS, make_detected_project

ONE_LINE = re.compile(r"^mck: error: (?P<item>[^:\s]+): (?P<what>.+) \((?P<fix>[^()]*(\([^()]*\)[^()]*)*)\)$")
S0, S1 = SESSIONS            # S1 has dropped frames and an aligned_frame_numbers.csv
GIMBAL_FAST = ["step.func_kwargs.n_iters=20", "step.func_kwargs.burn_in=10", "step.func_kwargs.checkpoint_every=10"]


def error_line(proc, item: str | None = None) -> re.Match:
    """The one ``mck: error:`` line of a failed run (no traceback), parsed; ``item`` checked if given."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("mck: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    match = ONE_LINE.match(lines[0])
    assert match, lines[0]
    if item is not None:
        assert match["item"] == item, lines[0]
    return match


def record(root: Path, step: str, output: str, item: str) -> dict:
    return json.loads((root / ".mck" / "records" / step / output / f"{item}.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The shared project: triangulated, GIMBAL parameters fitted (≈ 25 s once)."""
    tmp = tmp_path_factory.mktemp("faults")
    root = make_detected_project(tmp / "data", frames=40)
    cwd = tmp / "cwd"
    cwd.mkdir()
    run_mck(["step=triangulation", "-m", "session=glob(*)"], root, cwd, check=True)
    run_mck(["step=fit_gimbal", "step.func_kwargs.num_states=4", "step.func_kwargs.num_iters=30"], root, cwd,
            check=True)
    return root


@pytest.fixture
def project(base, tmp_path):
    """A private copy of the shared project (its videos too: some tests damage them)."""
    root = tmp_path / "data"
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("labels", "ground_truth"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return root, cwd


# -- 1. results that look fine but are not ----------------------------------------------------------------------

def test_session_missing_a_camera_is_an_error_or_a_recorded_warning(project):
    root, cwd = project
    video = root / S0 / f"{S0}.side3.mp4"
    video.rename(root / "side3.mp4")
    (root / S0 / f"{S0}.robust_triangulation.npy").unlink()
    proc = run_mck(["step=triangulation", f"session={S0}"], root, cwd)
    assert proc.returncode == 1
    m = error_line(proc, S0)
    assert m["what"] == "session has no video for camera side3 (found top, side1, side2, side4, bottom)"
    assert m["fix"] == (f"put {S0}.side3.mp4 into {root / S0}, or set project.allow_missing_cameras=true to "
                        "process it without it")
    st = status_json(root, cwd, "step=triangulation")[("triangulation", "robust_triangulation.npy")]
    assert st["items"][S0] == "failed" and "side3" in st["failed"][0]["error"]
    # allowed by the project: it runs, and the record carries the warning
    run_mck(["step=triangulation", f"session={S0}", "project.allow_missing_cameras=true"], root, cwd, check=True)
    rec = record(root, "triangulation", "robust_triangulation.npy", S0)
    assert rec["state"] == "done" and rec["warnings"] == [
        "made without camera side3 (project.allow_missing_cameras=true)"]
    # recovery: the video back, a normal re-run
    (root / "side3.mp4").rename(video)
    run_mck(["step=triangulation", f"session={S0}", "overwrite=true"], root, cwd, check=True)
    assert "warnings" not in record(root, "triangulation", "robust_triangulation.npy", S0)


def test_gimbal_refuses_a_session_without_2d_observations(project):
    root, cwd = project
    backup = {}
    for cam in ("top", "side1", "side2", "side3", "side4", "bottom"):
        path = root / S0 / f"{S0}.{cam}.keypoints.h5"
        backup[path] = path.read_bytes()
        with h5py.File(path, "r+") as f:
            f["uv"][...] = np.nan
            f["conf"][...] = np.nan
    proc = run_mck(["step=gimbal", *GIMBAL_FAST, f"session={S0}"], root, cwd)
    assert proc.returncode == 1
    m = error_line(proc, S0)
    assert m["what"] == "no 2D observations in any frame (every keypoint is missing or below min_conf)"
    assert m["fix"] == "re-run step=hrnet for this session, or check its keypoints.h5"
    assert not (root / S0 / f"{S0}.gimbal.npy").exists()
    assert status_json(root, cwd, "step=gimbal")[("gimbal", "gimbal.npy")]["items"][S0] == "failed"
    for path, data in backup.items():
        path.write_bytes(data)
    # recovery, and the per-frame observation counts beside gimbal.npy
    run_mck(["step=gimbal", *GIMBAL_FAST, f"session={S0}"], root, cwd, check=True)
    counts = np.load(root / S0 / f"{S0}.gimbal_obs.npy")
    assert counts.shape == (40, 14) and counts.dtype == np.uint8 and counts.max() <= 6 and counts.min() >= 0
    assert record(root, "gimbal", "gimbal.npy", S0)["metrics"]["unobserved_frames"] == 0


def test_gimbal_flags_frames_without_observations():
    """Frames that no camera saw are counted 0 (the prior's extrapolation); mostly-unseen sessions are refused."""
    from mck.errors import InputError
    from mck.steps.gimbal import check_observations, observation_counts

    uv = np.random.default_rng(0).normal(size=(10, 6, 14, 2))
    conf = np.full((10, 6, 14), 0.9)
    uv[3:5] = np.nan
    conf[7, :, :] = 0.1
    counts = observation_counts(uv, conf, 0.25)
    assert counts.shape == (10, 14) and (counts[[3, 4, 7]] == 0).all() and (counts[[0, 1, 2, 5, 6, 8, 9]] == 6).all()
    assert check_observations(counts, 0.5) == 3
    with pytest.raises(InputError, match="only 7 of 10 frames have a 2D observation"):
        check_observations(counts, 0.8, "S")


BAD_ALIGNMENTS = [
    ("abc", "line 2, column top: 'abc' is not a frame number"),
    ("0", "column top: 0 on line 3 does not follow 0 on line 2 (numbers must increase)"),
    ("bin", "alignment file is not CSV text"),
]


def test_bad_alignment_file_is_one_line(project):
    root, cwd = project
    path = root / S1 / "aligned_frame_numbers.csv"
    good = path.read_text()
    (root / S1 / f"{S1}.robust_triangulation.npy").unlink()
    for cells, what in BAD_ALIGNMENTS:
        if cells == "bin":
            path.write_bytes(bytes(range(256)) * 4)
        else:
            lines = good.splitlines()
            rows = [ln.split(",") for ln in lines[1:]]
            path.write_text("\n".join([lines[0], *(",".join([r[0]] + [cells if v else "" for v in r[1:]])
                                                   for r in rows)]) + "\n")
        proc = run_mck(["step=triangulation", f"session={S1}"], root, cwd)
        assert proc.returncode == 1
        m = error_line(proc, S1)
        assert m["what"] == f"{path}: {what}"
        assert m["fix"].startswith("fix or re-export the file")
    assert status_json(root, cwd, "step=triangulation")[("triangulation", "robust_triangulation.npy")][
        "items"][S1] == "failed"
    path.write_text(good)
    run_mck(["step=triangulation", f"session={S1}"], root, cwd, check=True)


def test_alignment_validation_unit(tmp_path):
    """Frame numbers beyond what a column lists, trigger numbers going back, floats written by pandas."""
    from mck.alignment import frame_table
    from mck.errors import InputError

    path = tmp_path / "a.csv"
    path.write_text("trigger_number,a,b\n0,0.0,0\n1,,1\n2,1.0,5\n")
    with pytest.raises(InputError, match=r"column b: frame 5 on line 4 but the column lists only 3 frames"):
        frame_table(path, ["a", "b"])
    path.write_text("trigger_number,a,b\n0,0.0,0\n0,,1\n")
    with pytest.raises(InputError, match="column trigger_number: 0 on line 3 does not follow 0 on line 2"):
        frame_table(path, ["a", "b"])
    path.write_text("trigger_number,a,b\n0,0.0,0\n1,,1\n2,1.0,2\n")
    assert frame_table(path, ["a", "b"]).tolist() == [[0, 0], [-1, 1], [1, 2]]


def test_planning_failure_is_recorded(project):
    """A frame-count mismatch found while planning shows as failed in status (not pending); fixing it recovers."""
    root, cwd = project
    run_mck(["step=probe", "step.func_kwargs.decode_all=false", "-m", f"video={S0}.side1,{S0}.side2"], root, cwd,
            check=True)
    probe = root / S0 / f"{S0}.side2.probe.json"
    good = probe.read_text()
    data = json.loads(good)
    probe.write_text(json.dumps({**data, "frames": data["frames"] - 3}))
    (root / S0 / f"{S0}.robust_triangulation.npy").unlink()
    proc = run_mck(["step=triangulation", "-m", "session=glob(*)"], root, cwd)
    assert proc.returncode == 1
    m = error_line(proc, S0)
    assert m["what"] == "cameras disagree on frame count (side1 40, side2 37) and there is no aligned_frame_numbers.csv"
    assert f"mck: failed: triangulation {S0}: cameras disagree" in proc.stderr
    st = status_json(root, cwd, "step=triangulation")[("triangulation", "robust_triangulation.npy")]
    assert st["items"][S0] == "failed" and st["failed"][0]["error"] == m.group(0)[len("mck: error: "):]
    assert record(root, "triangulation", "robust_triangulation.npy", S0)["phase"] == "planning"
    probe.write_text(good)
    run_mck(["step=triangulation", "-m", "session=glob(*)"], root, cwd, check=True)
    assert status_json(root, cwd, "step=triangulation")[("triangulation", "robust_triangulation.npy")][
        "items"][S0] == "done"


def test_failed_overwrite_sets_the_stale_output_aside(project):
    root, cwd = project
    video = f"{S0}.top"
    run_mck(["step=probe", f"video={video}"], root, cwd, check=True)
    probe = root / S0 / f"{video}.probe.json"
    assert probe.exists()
    path = root / S0 / f"{video}.mp4"
    good = path.read_bytes()
    path.write_bytes(good[:3000])
    proc = run_mck(["step=probe", f"video={video}", "overwrite=true"], root, cwd)
    assert proc.returncode == 1
    m = error_line(proc, video)
    assert m["what"] == f"{path}: cannot open video: Invalid data found when processing input"
    assert m["fix"] == "the file is damaged or truncated; re-copy it from the acquisition machine"
    assert not probe.exists() and Path(str(probe) + ".stale").exists()
    assert status_json(root, cwd, "step=probe")[("probe", "probe.json")]["items"][video] == "failed"
    path.write_bytes(good)
    run_mck(["step=probe", f"video={video}"], root, cwd, check=True)
    assert probe.exists() and not Path(str(probe) + ".stale").exists()


# -- 8. security: config values never reach a shell or a path unquoted --------------------------------------------

HOSTILE = ["x'; touch PWNED1; echo '", "$(touch PWNED2)", "`touch PWNED3`", 'a" ; touch PWNED4 ; echo "',
           "--help;touch PWNED5", "${IFS}touch${IFS}PWNED6"]


def test_slurm_setup_block_quotes_hostile_module_and_conda_names(tmp_path):
    """Render the sbatch script with hostile module, conda env and conda base names and run its setup block in
    bash (no `module`/`conda` there: the fallback echo lines run): nothing is executed, every name is echoed."""
    import subprocess

    from mck.compile import Job
    from mck.launch import slurm

    job = Job(step="probe", output_name="probe.json", level="video", item="S.top", session="S", outputs=[])
    for i, bad in enumerate(HOSTILE):
        params = slurm.slurm_parameters(job, {"cpu_partition": "short", "conda_base": bad}, [bad, "ok/1.0"], bad)
        script = slurm.sbatch_script(params, str(tmp_path / "sub"))
        setup = script.split("# setup\n", 1)[1].split("\n# command", 1)[0]
        assert setup.strip().count("\n") == 2, setup       # one line per module + conda: no injected lines
        proc = subprocess.run(["bash", "-c", f"PATH=/usr/bin:/bin; unset -f module conda; {setup}"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)
        assert not list(tmp_path.glob("PWNED*")), (bad, setup, proc.stderr)
        assert f"mck: could not module load {bad}" in proc.stderr, proc.stderr
    from mck.errors import ConfigError

    with pytest.raises(ConfigError, match=r"wrap_params.modules='m\\ntouch X' contains a line break"):
        slurm.slurm_parameters(job, {}, ["m\ntouch X"], None)


def test_slurm_job_names_and_parameters_cannot_add_lines():
    from mck.compile import Job
    from mck.errors import ConfigError
    from mck.launch import slurm

    job = Job(step="probe", output_name="probe.json", level="video", item="S.top\n#SBATCH --uid=0 $(x)",
              session="S", outputs=[])
    params = slurm.slurm_parameters(job, {"cpu_partition": "short"})
    assert params["job_name"] == "mck.probe.S.top__SBATCH_--uid_0___x_"
    with pytest.raises(ConfigError, match="contains a line break"):
        slurm.slurm_parameters(job, {"cpu_partition": "short\n#SBATCH --uid=0"})
    with pytest.raises(ConfigError, match=r"additional_parameters.comment='a\\nb' contains a line break"):
        slurm.slurm_parameters(job, {"additional_parameters": {"comment": "a\nb"}})


def test_item_and_output_names_with_dotdot_or_slash_are_refused(project):
    from mck.inventory import Settings, find_item
    from mck.layout import unsafe_name, unsafe_output_name

    root, cwd = project
    settings = Settings(str(root), str(root))
    assert find_item(settings, "session", S0) is not None
    for bad in ("..", f"../{root.name}/{S0}", f"{S0}/..", ".hidden"):
        assert find_item(settings, "session", bad) is None and unsafe_name(bad)
    assert find_item(settings, "video", f"../{root.name}/{S0}.top") is None
    proc = run_mck(["step=triangulation", f"session={S0}", "overwrite=true",
                    "step.output_info.output_name=../../evil.npy"], root, cwd)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "mck: error: output name '../../evil.npy' of step triangulation is not a plain file name (it is empty or '.' "
        "or '..') (set step.output_info.output_name, its also list and variant tags to names like keypoints.v2.h5)")
    assert unsafe_output_name("report/index.html") is None      # a sub-folder of the item's folder is fine
    assert unsafe_output_name("/tmp/x.npy") and unsafe_output_name("a/../b.npy")
    assert not list(root.parent.glob("*evil*")) and not (root / S0 / f"{S0}.robust_triangulation.npy.stale").exists()
    proc = run_mck(["step=triangulation", "session=.."], root, cwd)
    assert proc.returncode == 2 and proc.stderr.startswith("mck: error: no session named '..' under")


# -- 6 and 7: item names Hydra cannot parse, and the small messages ---------------------------------------------

ODD = "20240422_J(04)302"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Tiny grey videos: one normal session, one whose folder name has parentheses, one with other camera names."""
    from tests.conftest import make_project, write_tiny_video

    tmp = tmp_path_factory.mktemp("small")
    root = make_project(tmp / "data", sessions=(S0, ODD), frames=4)
    (root / "20240501_X").mkdir()
    write_tiny_video(root / "20240501_X" / "20240501_X.cam1.mp4", 4)
    cwd = tmp / "cwd"
    cwd.mkdir()
    return root, cwd


def test_folder_name_hydra_cannot_parse_is_refused_at_discovery(small):
    root, cwd = small
    warning = (f"mck: warning: {ODD}: folder is not used: it contains '(' ')', which Hydra's override grammar "
               f"cannot take (rename the folder and its videos, e.g. to '20240422_J_04_302')")
    proc = run_mck(["step=probe", "step.func_kwargs.decode_all=false", "-m", "video=glob(*)"], root, cwd)
    assert proc.returncode == 0, proc.stderr
    assert warning in proc.stderr.splitlines() and "mismatched input" not in proc.stderr
    assert "mck: 6 items: 6 done" in proc.stdout
    proc = run_mck(["step=probe", f"video='{ODD}.top'"], root, cwd)
    assert proc.returncode == 2
    m = error_line(proc, f"{ODD}.top")
    assert m["what"] == f"not a video: folder '{ODD}' is not used: it contains '(' ')', which Hydra's override " \
                        "grammar cannot take"
    assert m["fix"] == "rename the folder and its videos, e.g. to '20240422_J_04_302'"
    assert warning in run_mck(["status"], root, cwd).stderr.splitlines()


def test_unknown_step_lists_every_step_with_a_suggestion(small):
    root, cwd = small
    proc = run_mck(["step=tringulation", f"session={S0}"], root, cwd)
    assert proc.returncode == 2
    m = error_line(proc, "step=tringulation")
    assert m["what"].startswith("no step named 'tringulation'; did you mean triangulation")
    from mck.graph import build_graph

    assert m["fix"] == "steps: " + ", ".join(sorted(build_graph().order))


def test_session_whose_videos_use_other_camera_names_says_why(small):
    root, cwd = small
    proc = run_mck(["step=triangulation", "session=20240501_X"], root, cwd)
    assert proc.returncode == 2
    m = error_line(proc, "20240501_X")
    assert m["what"] == "not a session: its videos use cameras cam1, none of project.cameras (top, side1, side2, " \
                        "side3, side4, bottom)"
    assert m["fix"] == "rename the videos, or set project.cameras to these names"


def test_glob_matching_nothing_is_an_error(small):
    root, cwd = small
    proc = run_mck(["step=probe", "-m", "video=glob(*,exclude=*)"], root, cwd)
    assert proc.returncode == 2 and "0 jobs" not in proc.stderr + proc.stdout
    m = error_line(proc, "video=glob(*,exclude=*)")
    assert m["what"] == f"no video matches 'glob(*,exclude=*)' under {root}"
    assert m["fix"].startswith("6 video items exist, e.g. ")


def test_empty_data_root_gives_a_hint(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_mck(["status"], empty, tmp_path)
    assert proc.returncode == 0
    hint = [ln for ln in proc.stderr.splitlines() if ln.startswith("mck: warning:")]
    assert hint == [f"mck: warning: {empty}: no videos, sessions or calibrations (none found: a session is a folder "
                    "SESSION holding videos SESSION.CAMERA.mp4 for cameras top, side1, side2, side3, side4, bottom; "
                    "set project.data_root=… or MCK_DATA_ROOT, or run `python -m mck synth DIR` for a demo project)"]
    proc = run_mck(["step=probe", "-m", "video=glob(*)"], empty, tmp_path)
    assert proc.returncode == 2 and error_line(proc, "video=glob(*)")["fix"].startswith("none found: a session is")


def test_bad_func_kwargs_type_is_refused_even_on_a_done_item(small):
    root, cwd = small
    video = f"{S0}.top"
    run_mck(["step=probe", f"video={video}"], root, cwd, check=True)
    proc = run_mck(["step=probe", f"video={video}", "step.func_kwargs.decode_all=maybe"], root, cwd)
    assert proc.returncode == 1
    m = error_line(proc, video)
    assert m["what"] == "step.func_kwargs.decode_all='maybe': expected true or false (mck.steps.probe.run)"
    # a parameter whose default is None is checked against its annotation (float | None)
    proc = run_mck(["step=gimbal", f"session={S0}", "step.func_kwargs.obs_outlier_variance=abc"], root, cwd)
    assert proc.returncode == 1
    assert error_line(proc, S0)["what"] == ("step.func_kwargs.obs_outlier_variance='abc': expected a number "
                                            "(mck.steps.gimbal.run)")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04trunc", bytes(range(256)) * 8])
def test_unreadable_weights_is_one_line_without_torch_advice(tmp_path, content):
    from mck.detection.load import load_hrnet
    from mck.errors import InputError

    path = tmp_path / "hrnet_top.pth"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_hrnet(path)
    line = "mck: error: video: " + info.value.one_line()
    assert ONE_LINE.match(line) and "\n" not in line, line
    assert "weights_only" not in line and "torch.load" not in line
    assert str(path) in line and line.endswith("(expected a state dict written by torch.save; re-copy or re-train it)")


def test_rerun_on_a_damaged_snapshot_names_the_file_and_a_fix(small):
    root, cwd = small
    video = f"{S0}.side1"
    run_mck(["step=probe", f"video={video}", "step.func_kwargs.decode_all=false"], root, cwd, check=True)
    run_dir = Path(record(root, "probe", "probe.json", video)["run_dir"])
    snapshot = run_dir / "config.resolved.yaml"
    good = snapshot.read_bytes()
    for damaged in (good[: len(good) // 2], bytes(range(256))):
        snapshot.write_bytes(damaged)
        proc = run_mck(["rerun", str(run_dir)], None, cwd)
        assert proc.returncode == 2
        m = error_line(proc, str(snapshot))
        assert "$FULL_KEY" not in m.group(0) and "$VALUE_TYPE" not in m.group(0)
        assert m["fix"].startswith("the snapshot is damaged: restore it, or re-run the job with python -m mck step=")
    snapshot.write_bytes(good)
    run_mck(["rerun", str(run_dir)], None, cwd, check=True)


# -- 5. disk full -----------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    """A 600 KB tmpfs (root only; the test skips elsewhere)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave_bytes: int) -> Path:
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    return filler


def test_disk_full_is_one_line_nothing_half_written_and_rerun_recovers(base, tiny_disk, tmp_path):
    root = base
    out = tiny_disk / "out"
    (out / S0).mkdir(parents=True)
    calib = next(p for p in root.iterdir() if "calib" in p.name)
    (out / calib.name).mkdir()
    shutil.copy(calib / f"{calib.name}.camera_params.h5", out / calib.name)
    for path in (root / S0).glob("*.keypoints.h5"):
        shutil.copy(path, out / S0)
    filler = fill(tiny_disk, 100 << 10)
    args = ["step=triangulation", f"session={S0}", f"project.output_root={out}"]
    proc = run_mck(args, root, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "HDF5" not in proc.stderr
    m = error_line(proc, S0)
    assert re.fullmatch(rf"disk full: cannot write {out / S0}/{S0}\.\S+ \([\d.]+ KB free, needs [\d.]+ KB \+ 256\.0 KB "
                        r"reserve\)", m["what"]), m["what"]
    assert m["fix"] == ("free space there, or set project.output_root=… to a disk with room, and re-run; nothing was "
                        "left half-written")
    made = sorted(p.name for p in (out / S0).iterdir() if not p.name.endswith(".keypoints.h5"))
    assert made == [] and not list((out / ".mck").rglob("*.lock"))
    st = status_json(root, tmp_path, "step=triangulation", f"project.output_root={out}")
    assert st[("triangulation", "robust_triangulation.npy")]["items"][S0] == "failed"
    filler.unlink()
    run_mck(args, root, tmp_path, check=True)
    assert (out / S0 / f"{S0}.robust_triangulation.npy").exists()


def test_atomic_writers_and_locks_turn_enospc_into_one_line(tmp_path, monkeypatch):
    """Every writer in mck.io and the lock file, failing mid-write with ENOSPC (a real full tmpfs where one can be
    mounted, else ENOSPC raised at the OS boundary): DiskFullError naming the path, no temp file, no lock left."""
    import errno
    import os
    import subprocess

    from mck import io, records
    from mck.errors import DiskFullError

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    try:
        monkeypatch.setattr(io, "check_free_space", lambda *a, **k: None)   # no early refusal: hit the real write
        if mounted:
            fill(disk, 0)
        else:
            def no_space(*_a, **_k):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr(os, "fsync", no_space)
        big = np.zeros(200_000)
        writers = {"a.npy": lambda p: io.save_npy(p, big), "b.h5": lambda p: io.save_h5(p, {"x": big}),
                   "c.json": lambda p: io.save_json(p, {"x": list(range(50_000))})}
        for name, write in writers.items():
            with pytest.raises(DiskFullError) as info:
                write(disk / name)
            line = info.value.one_line()
            assert line.startswith(f"disk full: cannot write {disk / name} (") and "\n" not in line
            assert sorted(p.name for p in disk.iterdir()) == (["filler"] if mounted else [])
        if mounted:
            with pytest.raises(DiskFullError):
                records.try_lock(str(disk), "probe", "probe.json", "S.top")
            assert not list(disk.rglob("*.lock"))
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# -- already handled before issue 19, asserted here in the catalogue's shape --------------------------------------

def test_truncated_video_is_one_line_recorded_and_recovers(project):
    root, cwd = project
    video = f"{S0}.side2"
    path = root / S0 / f"{video}.mp4"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])
    proc = run_mck(["step=probe", "-m", f"video=glob({S0}.side*)"], root, cwd)
    assert proc.returncode == 1 and "mck: 4 items: 3 done, 1 failed" in proc.stdout
    m = error_line(proc, video)
    assert m["what"] == f"{path}: cannot open video: Invalid data found when processing input"
    assert m["fix"] == "the file is damaged or truncated; re-copy it from the acquisition machine"
    assert status_json(root, cwd, "step=probe")[("probe", "probe.json")]["items"][video] == "failed"
    assert not (root / S0 / f"{video}.probe.json").exists()
    path.write_bytes(good)
    run_mck(["step=probe", f"video={video}"], root, cwd, check=True)
    assert json.loads((root / S0 / f"{video}.probe.json").read_text())["frames"] == 40


def test_calibration_without_a_camera_is_one_line_recorded_and_recovers(project):
    from mck.calibration_io import load_camera_params, save_camera_params

    root, cwd = project
    calib = next(p for p in root.iterdir() if "calib" in p.name)
    params = calib / f"{calib.name}.camera_params.h5"
    good = params.read_bytes()
    names, ext, intr = load_camera_params(params)
    keep = [i for i, n in enumerate(names) if n != "side3"]
    save_camera_params(params, [names[i] for i in keep], ext[keep], [intr[i] for i in keep])
    (root / S0 / f"{S0}.robust_triangulation.npy").unlink()
    proc = run_mck(["step=triangulation", f"session={S0}"], root, cwd)
    assert proc.returncode == 1
    m = error_line(proc, S0)
    assert m["what"] == f"{params}: calibration has cameras top, side1, side2, side4, bottom but not side3"
    assert m["fix"] == "calibrate with all of the project's cameras or set project.cameras"
    assert status_json(root, cwd, "step=triangulation")[("triangulation", "robust_triangulation.npy")][
        "items"][S0] == "failed"
    params.write_bytes(good)
    run_mck(["step=triangulation", f"session={S0}"], root, cwd, check=True)


def test_unreadable_gimbal_parameters_are_one_line_recorded_and_recover(project):
    root, cwd = project
    weights = root / "weights" / "gimbal_params.p"
    good = weights.read_bytes()
    weights.write_bytes(b"\x00garbage")
    proc = run_mck(["step=gimbal", *GIMBAL_FAST, f"session={S0}"], root, cwd)
    assert proc.returncode == 1
    m = error_line(proc, S0)
    assert m["what"] == f"{weights}: not a GIMBAL parameter file: it does not load with joblib"
    assert m["fix"] == "re-run fit_gimbal"
    assert status_json(root, cwd, "step=gimbal")[("gimbal", "gimbal.npy")]["items"][S0] == "failed"
    weights.write_bytes(good)
    proc = run_mck(["step=gimbal", f"session={S0}", "dry_run=true"], root, cwd, check=True)


# Covered elsewhere (not repeated here):
#   kill -9 mid-step resumes byte-identically ... tests/reliability/test_reliability.py::test_kill9_mid_gimbal_*,
#                                                   ::test_kill9_mid_hrnet_* (slow)
#   concurrent launches run each item once ....... tests/spine/test_cli.py::test_concurrent_launches_run_each_item_once
#   raw videos are never modified ................. tests/reliability/test_reliability.py (module fixture),
#                                                   tests/qc/test_compression.py::test_entry_point_never_modifies_raw_videos
#   weights of the wrong architecture ............. tests/reliability/test_reliability.py::test_wrong_weights_shapes_*,
#                                                   tests/detection/test_models.py::test_bad_weights_files
