"""The observation model fitted to reprojection errors and confidences (mck.gimbal.observation_fit)."""

import numpy as np
import pytest

from mck.gimbal import fit_params, prepare_chain
from mck.gimbal.observation_fit import fit_observation_model, inlier_variance_scale
from mck.skeleton import MOUSE
from tests.gimbal.synthetic import mouse_poses


def sample_residuals(rng, inlier, alpha, outlier, center, gain, frames):
    """Residual magnitudes (C, T, K) px drawn from the model, with confidences uniform on [0.2, 1]."""
    C, K = inlier.shape
    conf = rng.uniform(0.2, 1.0, (C, frames, K))
    is_outlier = rng.uniform(size=conf.shape) < 1 / (1 + np.exp(-gain * (center - conf)))
    variance = np.where(is_outlier, outlier, inlier[:, None, :] * conf ** -alpha)
    residual = rng.normal(size=(*conf.shape, 2)) * np.sqrt(variance)[..., None]
    return np.linalg.norm(residual, axis=-1), conf, is_outlier


def test_em_recovers_the_model_it_was_drawn_from():
    rng = np.random.default_rng(0)
    inlier = rng.uniform(2.0, 12.0, (3, 4))
    errors, conf, _ = sample_residuals(rng, inlier, alpha=1.5, outlier=900.0, center=0.45, gain=10.0, frames=4000)
    errors[0, :50, 0] = np.nan                                                 # unused views are NaN
    fit = fit_observation_model(errors, conf)
    assert fit["confidence_exponent"] == pytest.approx(1.5, abs=0.1)
    assert np.allclose(fit["inlier_variance"], inlier, rtol=0.08)
    assert fit["outlier_variance"] == pytest.approx(900.0, rel=0.1)
    assert fit["outlier_center"] == pytest.approx(0.45, abs=0.05)
    assert fit["outlier_gain"] == pytest.approx(10.0, rel=0.25)


def test_confidence_that_says_nothing_fits_no_confidence_dependence():
    rng = np.random.default_rng(1)
    inlier = np.full((2, 3), 9.0)
    errors, conf, is_outlier = sample_residuals(rng, inlier, alpha=0.0, outlier=2500.0, center=0.5, gain=0.0,
                                                frames=5000)
    fit = fit_observation_model(errors, conf)
    assert fit["confidence_exponent"] < 0.1
    assert abs(fit["outlier_gain"]) < 1.0 and fit["outlier_fraction"] == pytest.approx(is_outlier.mean(), abs=0.02)
    rho = 1 / (1 + np.exp(-fit["outlier_gain"] * (fit["outlier_center"] - np.array([0.2, 0.6, 1.0]))))
    assert np.allclose(rho, is_outlier.mean(), atol=0.03)                     # the lab's parametrisation, flat


def test_too_few_errors_is_a_clear_error():
    with pytest.raises(ValueError, match="only 0 detections"):
        fit_observation_model(np.full((2, 5, 3), np.nan), np.ones((2, 5, 3)))


def test_fit_params_stores_the_model_beside_the_labs_variance():
    rng = np.random.default_rng(2)
    errors, conf, _ = sample_residuals(rng, np.full((6, 14), 4.0), alpha=1.0, outlier=400.0, center=0.4, gain=8.0,
                                       frames=300)
    x = mouse_poses(300, seed=3)
    params = fit_params(x, MOUSE.parents, reprojection_errors=errors, confidences=conf, num_states=4, num_iters=20)
    lab_only = fit_params(x, MOUSE.parents, reprojection_errors=errors, num_states=4, num_iters=20)
    assert np.array_equal(params["obs_inlier_variance"], lab_only["obs_inlier_variance"])   # the lab's rule, kept
    assert not any(k.startswith("obs_model_") for k in lab_only)
    assert params["obs_model_inlier_variance"].shape == (6, 14)
    assert params["obs_model_confidence_exponent"] == pytest.approx(1.0, abs=0.25)


def test_chain_gets_one_inlier_variance_per_detection():
    x = mouse_poses(6, seed=0)
    P = np.stack([np.hstack([np.eye(3) * [500, 500, 1], [[0], [0], [300.0 + 50 * c]]]) for c in range(3)])
    uv = np.random.default_rng(0).normal(size=(6, 3, 14, 2))
    conf = np.random.default_rng(1).uniform(0.1, 1.0, (6, 3, 14))
    params = fit_params(mouse_poses(200, seed=1), MOUSE.parents, num_cameras=3, num_states=3, num_iters=10)
    base = np.random.default_rng(2).uniform(1, 5, (3, 14))
    model, *_ = prepare_chain(uv, conf, P, params, init_positions=x, obs_inlier_variance=base,
                              obs_inlier_conf_exponent=1.5)
    assert model.obs_inlier_variance.shape == (6, 3, 14)
    assert np.allclose(model.obs_inlier_variance, base * np.clip(conf, 0.05, 1) ** -1.5)
    lab, *_ = prepare_chain(uv, conf, P, params, init_positions=x, obs_inlier_variance=base)
    assert lab.obs_inlier_variance.shape == (3, 14)
    assert np.allclose(inlier_variance_scale([np.nan, 0.0, 0.5], 2.0), [1.0, 400.0, 4.0])
