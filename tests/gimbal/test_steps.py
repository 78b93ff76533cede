"""Steps ``fit_gimbal`` and ``gimbal`` through ``python -m mck`` on a synthetic project whose detections are the
ground truth plus detector-like noise (so the test exercises GIMBAL, not the networks)."""

import numpy as np
import pytest

from mck.synth import load_ground_truth
from tests.conftest import run_mck, status_json
from tests.gimbal.project import SESSIONS, make_detected_project

pytestmark = pytest.mark.slow
FAST = ["step.func_kwargs.n_iters=60", "step.func_kwargs.burn_in=30", "step.func_kwargs.checkpoint_every=20"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_detected_project(tmp_path_factory.mktemp("gimbal") / "data")


def test_fit_then_smooth_then_skip(project, tmp_path):
    run_mck(["step=triangulation", "-m", "session=glob(*)"], project, tmp_path, check=True)
    proc = run_mck(["step=fit_gimbal", "step.func_kwargs.num_states=4", "step.func_kwargs.num_iters=50"], project,
                   tmp_path, check=True)
    assert (project / "weights" / "gimbal_params.p").is_file()
    from mck.gimbal import load_params
    params = load_params(project / "weights" / "gimbal_params.p")
    assert "bone lengths: 13 of 13 from" in proc.stdout + proc.stderr          # the labels: frames in all 6 cameras
    np.testing.assert_allclose(params["radii"], true_bone_lengths(project), atol=0.2)
    assert params["obs_model_inlier_variance"].shape == (6, 14) and params["obs_model_outlier_variance"] > 0
    assert 0 <= params["obs_model_confidence_exponent"] <= 4
    measured = []
    proc = run_mck(["step=gimbal", *FAST, "-m", "session=glob(*)"], project, tmp_path, check=True)
    assert "observation model: fitted" in proc.stdout + proc.stderr
    for session in SESSIONS:
        gt = load_ground_truth(project, session)
        positions = np.load(project / session / f"{session}.gimbal.npy")
        trace = np.load(project / session / f"{session}.ll.npy")
        assert positions.shape == (60, 14, 3) and positions.dtype == np.float32
        assert trace.shape == (60,) and np.all(np.isfinite(trace))
        assert not list((project / session).glob("*.checkpoint.npz"))
        from mck.skeleton import MOUSE
        truth = gt["keypoints3d"][:, MOUSE.node_order + 1]
        tri = np.load(project / session / f"{session}.robust_triangulation.npy")[:, MOUSE.node_order + 1]
        err = np.linalg.norm(positions - truth, axis=-1)
        tri_err = np.linalg.norm(tri - truth, axis=-1)
        assert np.median(err) < 3.0, (np.median(err), np.nanmedian(tri_err))
        measured.append((np.median(err), np.nanmedian(tri_err)))
    print("GIMBAL vs triangulation median error mm:", measured)
    status = status_json(project, tmp_path)
    assert status[("gimbal", "gimbal.npy")]["counts"]["done"] == 2
    assert status[("fit_gimbal", "gimbal_params.p")]["counts"]["done"] == 1
    again = run_mck(["step=gimbal", *FAST, "-m", "session=glob(*)"], project, tmp_path, check=True)
    assert "skip" in (again.stdout + again.stderr).lower()


def true_bone_lengths(project) -> np.ndarray:
    """(14,) mm, node order: the synthetic mouse's mean bone lengths over both sessions."""
    from mck.skeleton import MOUSE

    x = np.concatenate([load_ground_truth(project, s)["keypoints3d"][:, MOUSE.node_order + 1] for s in SESSIONS])
    return np.linalg.norm(x - x[:, MOUSE.parents], axis=-1).mean(0)


def test_labels_are_triangulated_at_their_triggers(project):
    """Frames labelled in several cameras become 3D poses; in the session whose side2 dropped frames, the label file
    names carry each video's own frame numbers, which the alignment file maps back to triggers."""
    from mck.alignment import trigger_rows
    from mck.steps.fit_gimbal import label_poses

    cameras = ["top", "side1", "side2", "side3", "side4", "bottom"]
    calibration = next(project.glob("*calib*/*.camera_params.h5"))
    aligned = project / SESSIONS[1] / "aligned_frame_numbers.csv"
    assert aligned.is_file()
    rows = trigger_rows(aligned, cameras)
    assert rows["top"] == {t: t for t in range(60)} and len(rows["side2"]) < 60
    dropped = sorted(set(range(60)) - set(rows["side2"].values()))
    assert all(rows["side2"][f] == f + sum(d <= rows["side2"][f] for d in dropped) for f in rows["side2"])
    truth = np.concatenate([load_ground_truth(project, s)["keypoints3d"] for s in SESSIONS])
    labels = sorted((project / "labels" / "images" / SESSIONS[1]).glob("*.side2.*.jpg"))
    assert labels and any(int(p.name.split(".")[2]) >= dropped[0] for p in labels)   # labels after the drop
    poses = label_poses(str(project / "labels"), {s: str(calibration) for s in SESSIONS}, cameras,
                        {SESSIONS[1]: str(aligned)})
    # the labelled triggers: the top camera never drops, so its file names are the triggers
    triggers = [(s, int(p.name.split(".")[2])) for s in SESSIONS
                for p in sorted((project / "labels" / "images" / s).glob("*.top.*.jpg"))]
    expected = np.stack([truth[SESSIONS.index(s) * 60 + t] for s, t in sorted(triggers)])
    assert poses.shape == expected.shape
    err = np.linalg.norm(poses - expected, axis=-1)
    assert np.nanmax(err) < 0.5, np.nanmax(err)
    pair = ["side1", "side2"]                                   # two views: a mismatched one cannot be outvoted
    poses = label_poses(str(project / "labels"), {SESSIONS[1]: str(calibration)}, pair,
                        {SESSIONS[1]: str(aligned)})
    expected = np.stack([truth[60 + t] for s, t in sorted(triggers) if s == SESSIONS[1]])
    assert np.nanmax(np.linalg.norm(poses - expected, axis=-1)) < 0.5


def test_bone_lengths_from_the_triangulations_on_request(project, tmp_path):
    """``bone_lengths=triangulation`` is the lab's rule (the mean over the triangulated frames); an unknown source
    is a one-line error."""
    from mck.gimbal import load_params
    from mck.skeleton import MOUSE
    from mck.steps.fit_gimbal import to_node_order

    run_mck(["step=triangulation", "-m", "session=glob(*)"], project, tmp_path, check=True)
    out = tmp_path / "weights"
    fit = ["step=fit_gimbal", "step.func_kwargs.num_states=4", "step.func_kwargs.num_iters=20",
           f"project.weights_dir={out}"]
    proc = run_mck([*fit, "step.func_kwargs.bone_lengths=triangulation"], project, tmp_path, check=True)
    assert "bone lengths: 13 of" not in proc.stdout + proc.stderr
    x = np.concatenate([to_node_order(np.load(project / s / f"{s}.robust_triangulation.npy")) for s in SESSIONS])
    x = x[np.isfinite(x).all(axis=(1, 2))]
    np.testing.assert_allclose(load_params(out / "gimbal_params.p")["radii"],
                               np.linalg.norm(x - x[:, MOUSE.parents], axis=-1).mean(0), rtol=1e-9)
    lab = load_params(out / "gimbal_params.p")["radii"]
    # the default source with nothing to use falls back
    proc = run_mck([*fit, f"project.labels_dir={tmp_path / 'no_labels'}", "overwrite=true"], project, tmp_path,
                   check=True)
    assert "bone lengths: from the triangulations (no labels folder)" in proc.stdout + proc.stderr
    np.testing.assert_array_equal(load_params(out / "gimbal_params.p")["radii"], lab)
    bad = run_mck([*fit, "step.func_kwargs.bone_lengths=guess", "overwrite=true"], project, tmp_path)
    assert bad.returncode != 0 and "unknown bone_lengths 'guess'" in bad.stderr and "Traceback" not in bad.stderr


def test_preempted_gimbal_resumes_to_the_identical_result(project, tmp_path):
    from mck.runtime import Preempted, clear_stop, request_stop
    from mck.steps import gimbal

    session = SESSIONS[1]                                                # the one with dropped frames
    if not (project / "weights" / "gimbal_params.p").is_file():
        pytest.skip("needs the fitted parameters of test_fit_then_smooth_then_skip")
    calib = next(p for p in project.iterdir() if "calib" in p.name)
    cams = ["top", "side1", "side2", "side3", "side4", "bottom"]
    args = dict(keypoints_paths={c: str(project / session / f"{session}.{c}.keypoints.h5") for c in cams},
                triangulation_path=str(project / session / f"{session}.robust_triangulation.npy"),
                calibration_path=str(calib / f"{calib.name}.camera_params.h5"),
                params_path=str(project / "weights" / "gimbal_params.p"),
                alignment_path=str(project / session / "aligned_frame_numbers.csv"),
                n_iters=50, burn_in=20, thin=2, checkpoint_every=15)
    straight = tmp_path / "a.gimbal.npy"
    gimbal.run(output_path=str(straight), **args)
    resumed = tmp_path / "b.gimbal.npy"
    request_stop()
    try:
        with pytest.raises(Preempted):
            gimbal.run(output_path=str(resumed), **args)
    finally:
        clear_stop()
    assert (tmp_path / "b.gimbal.npy.checkpoint.npz").is_file() and not resumed.exists()
    metrics = gimbal.run(output_path=str(resumed), **args)
    assert metrics["resumed_at"] == 15
    assert np.array_equal(np.load(straight), np.load(resumed))
    assert np.array_equal(np.load(tmp_path / "a.ll.npy"), np.load(tmp_path / "b.ll.npy"))


def test_missing_parameters_is_a_one_line_error(project, tmp_path):
    proc = run_mck(["step=gimbal", "project.weights.gimbal_params=/nonexistent/gimbal_params.p", *FAST,
                    "session=20240422_J04301", "overwrite=true"], project, tmp_path)
    assert proc.returncode != 0
    # refused while compiling, before the job starts: one line naming the item, the input, the path and the fix
    line = proc.stderr.strip()
    assert line.startswith("mck: error: 20240422_J04301:") and "\n" not in line, proc.stderr
    assert "/nonexistent/gimbal_params.p does not exist" in line and "step=fit_gimbal" in line


def test_unknown_position_update_is_a_one_line_error(project, tmp_path):
    proc = run_mck(["step=gimbal", "step.func_kwargs.position_update=sideways", *FAST, "session=20240422_J04301",
                    "overwrite=true"], project, tmp_path)
    assert proc.returncode != 0
    assert "unknown position_update 'sideways'" in proc.stderr and "frames, joint" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("override, message", [
    ("step.func_kwargs.observation_model=guessed", "unknown observation_model 'guessed'"),
    ("step.func_kwargs.obs_outlier_variance=-5", "obs_outlier_variance=-5 is not a positive number"),
])
def test_bad_observation_settings_are_one_line_errors(project, tmp_path, override, message):
    proc = run_mck(["step=gimbal", override, *FAST, "session=20240422_J04301", "overwrite=true"], project, tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_lab_observation_model_runs_from_the_same_parameter_file(project, tmp_path):
    if not (project / "weights" / "gimbal_params.p").is_file():
        pytest.skip("needs the fitted parameters of test_fit_then_smooth_then_skip")
    proc = run_mck(["step=gimbal", "step.func_kwargs.observation_model=lab", *FAST, "session=20240422_J04301",
                    "overwrite=true"], project, tmp_path, check=True)
    assert "observation model: lab's" in proc.stdout + proc.stderr
