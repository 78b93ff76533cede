"""Parameter fitting (docs/algorithms.md §C.8) and the lab's parameter file."""

import jax.numpy as jnp
import jax.random as jr
import joblib
import numpy as np
import pytest

from mck.gimbal import em_movmf, fit_params, load_params, save_params
from mck.gimbal.distributions import sample_vmf
from mck.gimbal.fit import canonical_poses
from mck.skeleton import MOUSE
from tests.gimbal.synthetic import mouse_poses


def test_em_recovers_a_two_state_mixture():
    mus = np.array([[[0, 0, 1.0], [1, 0, 0]], [[0, 1.0, 0], [0, 0, -1]]])      # (S=2, K=2, 3)
    labels = np.r_[np.zeros(3000, int), np.ones(1000, int)]
    u = sample_vmf(jr.PRNGKey(0), jnp.asarray(mus[labels]), jnp.full((4000, 2), 40.0))
    pi, mu, kappa, trace = em_movmf(jr.PRNGKey(1), u, num_states=2, num_iters=100)
    order = np.argsort(-np.asarray(pi))
    assert np.allclose(np.asarray(pi)[order], [0.75, 0.25], atol=0.01)
    assert np.all(np.sum(np.asarray(mu)[order] * mus, -1) > 0.995)
    assert np.allclose(np.asarray(kappa)[order], 40, rtol=0.1)
    assert np.all(np.diff(np.asarray(trace)[5:]) > -1e-6)                    # EM never decreases the likelihood


def test_fit_params_layout_and_bone_lengths_in_node_order(tmp_path):
    x = mouse_poses(600, seed=3)
    params = fit_params(x, MOUSE.parents, num_cameras=6, num_states=5, num_iters=50, node_names=MOUSE.names)
    expected = np.linalg.norm(x - x[:, MOUSE.parents], axis=-1).mean(0)
    assert np.allclose(params["radii"], expected)
    assert params["radii"][0] == 0 and np.all(params["radii"][1:] > 3)
    shapes = {k: np.shape(params[k]) for k in ("obs_inlier_variance", "parents", "radii", "radii_std", "kappas",
                                                "mus", "pis")}
    assert shapes == {"obs_inlier_variance": (6, 14), "parents": (14,), "radii": (14,), "radii_std": (14,),
                      "kappas": (5, 14), "mus": (5, 14, 3), "pis": (5,)}
    assert np.all(params["kappas"][:, 0] == 0) and np.allclose(params["mus"][:, 0], [1, 0, 0])
    assert np.all(params["kappas"] <= 100) and params["pis"].sum() == pytest.approx(1)
    path = tmp_path / "gimbal_params.p"
    save_params(path, params)
    loaded = load_params(path)
    assert set(params) <= set(loaded) and np.array_equal(loaded["mus"], params["mus"])
    assert isinstance(joblib.load(path), dict)                                # the lab's reader: a plain dict


def test_bone_lengths_measured_elsewhere_replace_the_means_where_given():
    from mck.gimbal.fit import mean_bone_lengths

    x = mouse_poses(300, seed=5)
    truth = np.linalg.norm(x - x[:, MOUSE.parents], axis=-1).mean(0)
    partial = x.copy()
    partial[:200, 11] = np.nan                                                # node 11 seen in 100 frames only
    partial[:, 13] = np.nan                                                   # node 13 never
    radii, counts = mean_bone_lengths(partial, MOUSE.parents)
    assert counts[11] == 100 and counts[13] == 0 and counts[1] == 300 and np.isnan(radii[13])
    assert np.allclose(radii[11], np.linalg.norm(x[200:, 11] - x[200:, 10], axis=-1).mean())
    assert np.allclose(radii[:11], truth[:11]) and radii[0] == 0
    biased = x.copy()
    biased[:, 11] = biased[:, 10] + 0.2 * (biased[:, 11] - biased[:, 10])    # a detector pulling a paw's ends together
    params = fit_params(biased, MOUSE.parents, num_cameras=6, num_states=3, num_iters=20, radii=radii)
    assert np.allclose(params["radii"][:13], radii[:13])                      # measured elsewhere: kept
    assert params["radii"][13] == pytest.approx(np.linalg.norm(biased[:, 13] - biased[:, 12], axis=-1).mean())
    assert params["radii_std"][11] == pytest.approx(np.linalg.norm(biased[:, 11] - biased[:, 10], axis=-1).std())
    with pytest.raises(ValueError, match="radii"):
        fit_params(x, MOUSE.parents, num_cameras=6, num_states=3, num_iters=5, radii=np.ones(5))


def test_canonical_frame_points_the_spine_along_x():
    x = canonical_poses(mouse_poses(50, seed=1))
    spine = x[:, 2] - x[:, 0]
    assert np.allclose(spine[:, 1], 0, atol=1e-9) and np.all(spine[:, 0] > 0)
    assert np.allclose(x.mean(1), 0, atol=1e-9)


def test_load_params_names_file_and_problem(tmp_path):
    path = tmp_path / "bad.p"
    joblib.dump({"mus": np.zeros((3, 4, 3))}, path)
    with pytest.raises(ValueError, match=r"bad\.p: missing key 'obs_inlier_variance'"):
        load_params(path)
    path.write_text("not a pickle")
    with pytest.raises(ValueError, match="not a GIMBAL parameter file"):
        load_params(path)


def test_too_few_complete_frames_is_a_clear_error():
    x = mouse_poses(20, seed=0)
    with pytest.raises(ValueError, match="only 20 complete frames"):
        fit_params(x, MOUSE.parents, num_cameras=6, num_states=50)
