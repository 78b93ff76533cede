"""float32 as a tested path, and the convergence diagnostic / stop-when-converged option."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import mck.gimbal  # noqa: F401  (x64)
from mck.gimbal import model as M
from mck.gimbal import smooth
from mck.gimbal.convergence import converged, diagnose, effective_sample_size, split_rhat, watch_indices
from mck.gimbal.distributions import sample_vmf, sample_von_mises
from tests.gimbal.test_chain import random_cameras, random_tree_params, skeleton_observations


def test_vmf_float32_at_large_concentration():
    """1 − μ·u has mean 1/κ for large κ; the radial part comes from δ = 1 − w itself, so float32 keeps it."""
    kappa = 1e5
    mean = jnp.broadcast_to(jnp.array([0.0, 0.6, 0.8], jnp.float32), (50000, 3))
    u = sample_vmf(jr.PRNGKey(0), mean, jnp.full(50000, kappa, jnp.float32))
    assert u.dtype == jnp.float32
    delta = 1.0 - np.asarray(jnp.sum(u.astype(jnp.float64) * mean, axis=-1))
    assert abs(delta.mean() * kappa - 1.0) < 0.05
    np.testing.assert_allclose(np.linalg.norm(np.asarray(u, np.float64), axis=-1), 1.0, atol=2e-6)


@pytest.mark.parametrize("kappa", [1e3, 1e5])
def test_von_mises_float32_at_large_concentration(kappa):
    theta = sample_von_mises(jr.PRNGKey(1), jnp.zeros(40000, jnp.float32), jnp.full(40000, kappa, jnp.float32))
    assert theta.dtype == jnp.float32
    assert abs(np.std(np.asarray(theta, np.float64)) * np.sqrt(kappa) - 1.0) < 0.03


def test_energy_terms_sum_to_the_log_prob_and_the_trace_accumulates_in_float64():
    params = random_tree_params(K=5, S_=3, C=3, seed=2)
    P = random_cameras(3, seed=2)
    x, uv = skeleton_observations(params, P, N=20, seed=2)
    from mck.gimbal import prepare_chain

    model, data, state, _ = prepare_chain(uv, None, P, params, init_positions=x, dtype="float32")
    args = (state.directions, data.observations, data.observed, state.outliers)
    terms, grad = M.positions_terms_and_grad(model, state.positions, *args)
    assert terms.dtype == jnp.float32 and terms.shape == (20 + 19 + 1,)
    np.testing.assert_allclose(float(jnp.sum(terms, dtype=jnp.float64)),
                               float(M.positions_log_prob(model, state.positions, *args)), rtol=1e-5)
    from mck.gimbal.sampler import log_joint

    assert log_joint(model, data, state).dtype == jnp.float64


def test_float32_chain_matches_float64_accuracy():
    params = random_tree_params(K=6, S_=4, C=3, seed=1)
    P = random_cameras(3, seed=1)
    x, uv = skeleton_observations(params, P, N=40, seed=1)
    errors = {}
    for dtype in ("float64", "float32"):
        r = smooth(uv, None, P, params, n_iters=60, burn_in=30, thin=2, init_positions=x + 1.0, seed=0, dtype=dtype,
                   position_update="joint" if dtype == "float32" else "frames")
        assert r.state.positions.dtype == np.dtype(dtype) and r.log_likelihood.dtype == np.float64
        assert np.all(np.isfinite(r.positions)) and np.all(np.isfinite(r.log_likelihood))
        errors[dtype] = np.mean(np.linalg.norm(r.positions - x, axis=-1))
    assert errors["float32"] < 1.5 * errors["float64"] + 0.3


def test_split_rhat_and_ess_on_known_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4000, 3))
    assert np.all(np.abs(split_rhat(iid) - 1) < 0.01)
    assert np.all(np.abs(effective_sample_size(iid) / 4000 - 1) < 0.2)
    ar = np.zeros((4000, 2))                        # AR(1), φ = 0.9: ESS ≈ n (1 − φ)/(1 + φ) ≈ 210
    for t in range(1, 4000):
        ar[t] = 0.9 * ar[t - 1] + rng.normal(size=2)
    ess = effective_sample_size(ar)
    assert np.all((ess > 120) & (ess < 350))
    drift = np.linspace(0, 10, 4000)[:, None] + rng.normal(size=(4000, 1))
    assert split_rhat(drift)[0] > 1.5
    assert split_rhat(np.ones((100, 2)))[0] == 1.0
    summary = diagnose(np.concatenate([drift[:2000] * 50, iid[:2000, :1]]))   # first half is warm-up
    assert summary["draws"] == 2000 and converged(summary)
    assert watch_indices(100, 4, count=3).tolist() == [*range(12), *range(50 * 12, 51 * 12), *range(99 * 12, 1200)]


def test_stop_when_converged_ends_burn_in_early_and_keeps_the_schedule():
    params = random_tree_params(K=6, S_=4, C=3, seed=1)
    P = random_cameras(3, seed=1)
    x, uv = skeleton_observations(params, P, N=30, seed=1)
    kw = dict(n_iters=400, burn_in=300, thin=2, init_positions=x, seed=0, chunk_iters=50, watch_frames=4)
    fixed = smooth(uv, None, P, params, **kw)
    assert fixed.iterations == 400 and len(fixed.diagnostics) == 8
    # A loose threshold passes at the first check: burn-in ends at 50, then 100 iterations (as 400 − 300) are kept.
    early = smooth(uv, None, P, params, stop_when_converged=True, rhat_threshold=100.0, min_ess=1.0, **kw)
    assert early.converged_at == 50 and early.iterations == 150 and early.samples == fixed.samples == 49
    never = smooth(uv, None, P, params, stop_when_converged=True, rhat_threshold=1.0, min_ess=1e9, **kw)
    assert never.iterations == 400 and never.converged_at is None
    assert np.array_equal(never.positions, fixed.positions)
