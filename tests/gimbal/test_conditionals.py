"""Each GIMBAL conditional against its closed form, on tiny models."""

import itertools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.special import i0e, i1e

import mck.gimbal  # noqa: F401  (switches x64 on)
from mck.gimbal import model as M
from mck.gimbal import sampler as S
from mck.gimbal.distributions import sample_vmf, sample_von_mises, vmf_log_prob
from mck.gimbal.hmm import sample_states
from mck.gimbal.prepare import outlier_probability


def tiny_params(K=3, S_=2, C=2, seed=0):
    rng = np.random.default_rng(seed)
    mus = rng.normal(size=(S_, K, 3))
    mus /= np.linalg.norm(mus, axis=-1, keepdims=True)
    mus[:, 0] = [1, 0, 0]
    kappas = rng.uniform(2, 20, size=(S_, K))
    kappas[:, 0] = 0
    return {"obs_inlier_variance": np.full((C, K), 4.0), "parents": np.array([0] + list(range(K - 1))),
            "radii": np.r_[0, rng.uniform(10, 20, K - 1)], "radii_std": np.r_[0, rng.uniform(1, 2, K - 1)],
            "kappas": kappas, "mus": mus, "pis": np.full(S_, 1.0 / S_), "indices_egocentric": [0, 1]}


def two_cameras():
    K = np.array([[500.0, 0, 320], [0, 500, 256], [0, 0, 1]])
    P1 = K @ np.c_[np.eye(3), [0, 0, 0]]
    c, s = np.cos(0.5), np.sin(0.5)
    R = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    P2 = K @ np.c_[R, R @ -np.array([300.0, 0, 0])]
    return np.stack([P1, P2])


def test_vmf_sample_mean_matches_closed_form():
    mu = jnp.array([0.0, 0.6, 0.8])
    for kappa in (0.0, 0.5, 5.0, 300.0):
        u = sample_vmf(jr.PRNGKey(1), jnp.broadcast_to(mu, (40000, 3)), jnp.full(40000, kappa))
        assert np.allclose(np.linalg.norm(u, axis=-1), 1, atol=1e-9)
        expected = 0.0 if kappa == 0 else 1 / np.tanh(kappa) - 1 / kappa
        assert float(jnp.mean(u @ mu)) == pytest.approx(expected, abs=0.01)


def test_vmf_log_prob_normalised():
    # Monte-Carlo ∫ exp(log vMF) over the sphere = 1 (uniform samples, density × 4π).
    u = sample_vmf(jr.PRNGKey(2), jnp.broadcast_to(jnp.array([1.0, 0, 0]), (200000, 3)), jnp.zeros(200000))
    dens = jnp.exp(vmf_log_prob(u, jnp.array([0.0, 0, 1]), 3.0))
    assert float(jnp.mean(dens) * 4 * np.pi) == pytest.approx(1.0, abs=0.02)
    assert float(vmf_log_prob(jnp.zeros(3), jnp.array([1.0, 0, 0]), 0.0)) == pytest.approx(-np.log(4 * np.pi))


@pytest.mark.parametrize("kappa", [0.0, 0.3, 4.0, 800.0])
def test_von_mises_mean_resultant(kappa):
    theta = sample_von_mises(jr.PRNGKey(3), jnp.full(40000, 1.0), jnp.full(40000, kappa))
    resultant = np.mean(np.exp(1j * (np.asarray(theta) - 1.0)))
    expected = 0.0 if kappa == 0 else i1e(kappa) / i0e(kappa)
    assert abs(resultant) == pytest.approx(expected, abs=0.012)
    if kappa > 1:
        assert abs(np.angle(resultant)) < 0.02


def test_outlier_probability_pipeline_values():
    rho = outlier_probability(np.array([0.25, 0.5, 0.75, 1.0, np.nan]))
    assert np.allclose(rho[:4], [0.993307, 0.5, 0.0066929, 4.5398e-5], rtol=1e-4)
    assert rho[4] == pytest.approx(1 - 1e-6)


def _tiny_chain(N=4, seed=0, missing=None):
    params = tiny_params()
    P = two_cameras()
    model = M.make_model(params, P)
    rng = np.random.default_rng(seed)
    x = np.array([[0, 0, 800.0], [12, 0, 800], [24, 3, 805]])[None] + rng.normal(scale=1, size=(N, 3, 3))
    y = np.asarray(M.project(model.camera_matrices, jnp.asarray(x))) + rng.normal(scale=2, size=(N, 2, 3, 2))
    if missing is not None:
        y[missing] = np.nan
    data = S.make_data(y, np.full((N, 2, 3), 0.2))
    state = S.initialize(jr.PRNGKey(seed), model, data, x)
    return model, data, state


def test_outlier_conditional_closed_form():
    model, data, state = _tiny_chain()
    keys = jr.split(jr.PRNGKey(5), 20000)
    draws = jax.vmap(lambda k: S.resample_outliers(k, model, data, state.positions))(keys)
    err = np.asarray(data.observations - M.project(model.camera_matrices, state.positions))
    sq = (err ** 2).sum(-1)
    lin = np.exp(-0.5 * sq / 4.0) / (2 * np.pi * 4.0)
    lout = np.exp(-0.5 * sq / 1e6) / (2 * np.pi * 1e6)
    p = 0.2 * lout / (0.2 * lout + 0.8 * lin)
    assert np.allclose(np.asarray(draws).mean(0), p, atol=0.012)


def test_direction_conditional_is_the_vmf_product():
    model, data, state = _tiny_chain()
    keys = jr.split(jr.PRNGKey(6), 20000)
    draws = jax.vmap(lambda k: S.resample_directions(k, model, state.positions, state.headings, state.states))(keys)
    s = np.asarray(state.states)
    mu = np.asarray(M.rotate_z(state.headings, model.state_directions[s]))
    m = (np.asarray(model.state_concentrations)[s][..., None] * mu
         + (np.asarray(model.radii) / np.asarray(model.radial_variance))[:, None]
         * np.asarray(M.parent_offsets(model, state.positions)))
    kappa = np.linalg.norm(m, axis=-1)[:, 1:]
    mean_dir = m[:, 1:] / kappa[..., None]
    expected = (1 / np.tanh(kappa) - 1 / kappa)[..., None] * mean_dir
    assert np.allclose(np.asarray(draws).mean(0)[:, 1:], expected, atol=0.01)
    assert np.all(np.asarray(draws)[:, :, 0] == 0)


def test_heading_conditional_matches_grid_posterior():
    model, data, state = _tiny_chain(N=1)
    for exact in (True, False):
        keys = jr.split(jr.PRNGKey(7), 30000)
        h = np.asarray(jax.vmap(lambda k: S.resample_headings(k, model, state.directions, state.states, exact))(keys))
        grid = np.linspace(-np.pi, np.pi, 2001)[:-1]
        s = np.asarray(state.states)[0]
        kap = np.asarray(model.state_concentrations)[s] if exact else np.ones(3)
        u = np.asarray(state.directions)[0]
        logp = np.array([np.sum(kap * np.sum(np.asarray(M.rotate_z(jnp.array([-g]), jnp.asarray(u[None])))[0]
                                              * np.asarray(model.state_directions)[s], -1)) for g in grid])
        w = np.exp(logp - logp.max())
        w /= w.sum()
        expected = np.sum(w * np.exp(1j * grid))
        assert np.mean(np.exp(1j * h[:, 0])) == pytest.approx(expected, abs=0.015)


def _enumerate_posterior(loglik, pi, A):
    N, S_ = loglik.shape
    probs = {}
    for seq in itertools.product(range(S_), repeat=N):
        lp = np.log(pi[seq[0]]) + sum(loglik[t, seq[t]] for t in range(N))
        lp += sum(np.log(A[seq[t], seq[t + 1]]) for t in range(N - 1))
        probs[seq] = np.exp(lp)
    z = sum(probs.values())
    marg = np.zeros((N, S_))
    for seq, p in probs.items():
        marg[np.arange(N), seq] += p / z
    return marg


def test_ffbs_matches_enumeration_and_blocked_gibbs_converges_to_it():
    rng = np.random.default_rng(0)
    N, S_ = 5, 3
    loglik = rng.normal(scale=1.5, size=(N, S_))
    A = rng.dirichlet(np.ones(S_) * 2, size=S_)
    pi = rng.dirichlet(np.ones(S_))
    exact = _enumerate_posterior(loglik, pi, A)
    args = (jnp.asarray(loglik), jnp.asarray(pi), jnp.asarray(A))
    draws = jax.vmap(lambda k: sample_states(k, *args, jnp.zeros(N, jnp.int32), 100))(jr.split(jr.PRNGKey(0), 30000))
    freq = np.stack([(np.asarray(draws) == s).mean(0) for s in range(S_)], axis=1)
    assert np.allclose(freq, exact, atol=0.012)
    draws = jax.vmap(lambda k: sample_states(k, *args, jnp.zeros(N, jnp.int32), 100, "parallel"))(
        jr.split(jr.PRNGKey(2), 30000))
    freq = np.stack([(np.asarray(draws) == s).mean(0) for s in range(S_)], axis=1)
    assert np.allclose(freq, exact, atol=0.012)
    # Blocks of 2 frames: a Gibbs chain whose stationary distribution is the same posterior.
    def chain(key):
        def body(states, k):
            states = sample_states(k, *args, states, 2)
            return states, states
        return jax.lax.scan(body, jnp.zeros(N, jnp.int32), jr.split(key, 200))[1][50:]
    samples = np.asarray(jax.vmap(chain)(jr.split(jr.PRNGKey(1), 200))).reshape(-1, N)
    freq = np.stack([(samples == s).mean(0) for s in range(S_)], axis=1)
    assert np.allclose(freq, exact, atol=0.02)


def test_transition_matrix_conditional_is_dirichlet():
    model = M.make_model(tiny_params(S_=3), two_cameras(), state_transition_count=1.0)
    states = jnp.array([0, 0, 1, 2, 2, 2, 0, 1], dtype=jnp.int32)
    draws = jax.vmap(lambda k: S.resample_transition_matrix(k, model, states))(jr.split(jr.PRNGKey(4), 20000))
    counts = np.array([[1, 2, 0], [0, 0, 1], [1, 0, 2]]) + 1.0
    assert np.allclose(np.asarray(draws).mean(0), counts / counts.sum(1, keepdims=True), atol=0.01)


def test_frame_values_hold_every_term_that_involves_the_frame():
    """Moving frame t alone changes the log prob by exactly the change of frame t's value (what the per-frame
    Metropolis decision of the "frames" update relies on), at the first, a middle and the last frame."""
    N = 5
    model, data, state = _tiny_chain(N=N)

    def logp(x):
        return float(M.positions_log_prob(model, x, state.directions, data.observations, data.observed,
                                          state.outliers))

    def values(x):
        v, _ = M.positions_frame_values_and_grad(model, x, state.directions, data.observations, data.observed,
                                                 state.outliers)
        return np.asarray(v)

    x0 = state.positions
    for t in (0, 2, N - 1):
        x1 = x0.at[t].add(jnp.asarray(np.random.default_rng(t).normal(scale=2.0, size=(3, 3))))
        assert logp(x1) - logp(x0) == pytest.approx(values(x1)[t] - values(x0)[t], rel=1e-9, abs=1e-9)
        untouched = np.abs(np.arange(N) - t) > 1
        assert np.allclose(values(x1)[untouched], values(x0)[untouched])
    total, grad = M.positions_value_and_grad(model, x0, state.directions, data.observations, data.observed,
                                             state.outliers)
    assert float(total) == pytest.approx(logp(x0), rel=1e-12)


@pytest.mark.parametrize("update", ["joint", "frames"])
def test_hmc_targets_the_gaussian_positions_conditional_without_observations(update):
    """All views missing: the positions conditional is Gaussian (skeleton × random walk), known in closed form."""
    N, K = 2, 3
    model, data, state = _tiny_chain(N=N, missing=np.ones((N, 2, 3), bool))
    logp = lambda x: M.positions_log_prob(model, x.reshape(N, K, 3), state.directions, data.observations,  # noqa
                                          data.observed, state.outliers)
    H = np.asarray(jax.hessian(logp)(jnp.zeros(N * K * 3)))
    g0 = np.asarray(jax.grad(logp)(jnp.zeros(N * K * 3)))
    cov = np.linalg.inv(-H)
    mean = cov @ g0

    def body(st, inputs):
        k, i = inputs
        if update == "joint":
            x, _ = S.resample_positions(k, model, data, st, 0.6, 5)
        else:
            x, _ = S.resample_positions_by_frames(k, model, data, st, 0.6, 5, i % 2)
        return st._replace(positions=x), x.reshape(-1)
    start = state._replace(positions=jnp.asarray(mean.reshape(N, K, 3)))
    _, xs = jax.lax.scan(body, start, (jr.split(jr.PRNGKey(9), 20000), jnp.arange(20000)))
    xs = np.asarray(xs)[2000:]
    sd = np.sqrt(np.diag(cov))
    # The root (1e8 prior) is nearly free; check the well-determined relative coordinates instead.
    rel = xs.reshape(-1, N, K, 3)[:, :, 1:] - xs.reshape(-1, N, K, 3)[:, :, :1]
    rel_mean = (mean.reshape(N, K, 3)[:, 1:] - mean.reshape(N, K, 3)[:, :1])
    assert np.all(np.abs(rel.mean(0) - rel_mean) < 0.15 * np.max(sd))
    to_rel = np.zeros((N, K - 1, 3, N, K, 3))                               # rel = A x
    for t, k, d in itertools.product(range(N), range(1, K), range(3)):
        to_rel[t, k - 1, d, t, k, d], to_rel[t, k - 1, d, t, 0, d] = 1.0, -1.0
    A = to_rel.reshape(N * (K - 1) * 3, N * K * 3)
    rel_sd = np.sqrt(np.diag(A @ cov @ A.T)).reshape(N, K - 1, 3)
    assert np.allclose(rel.std(0), rel_sd, rtol=0.15)                       # the spread too, not only the centre
    assert np.all(np.isfinite(xs))


def test_missing_views_do_not_poison_the_log_joint():
    missing = np.zeros((4, 2, 3), bool)
    missing[1, 0, 2] = missing[3, 1] = True
    model, data, state = _tiny_chain(missing=missing)
    assert np.isfinite(float(S.log_joint(model, data, state)))
    options = S.SweepOptions(burn_in=0, thin=1)
    state, trace = S.run_iterations(model, data, state, 0, 30, seed=0, options=options)
    assert np.all(np.isfinite(trace)) and float(state.accepted) > 0
    assert bool(np.all(np.asarray(state.outliers)[missing]))


def test_hand_written_gradient_equals_autodiff():
    missing = np.zeros((4, 2, 3), bool)
    missing[2, 1, 1] = True
    model, data, state = _tiny_chain(missing=missing)
    outliers = state.outliers.at[0, 0, 0].set(True).at[1, 1, 2].set(False)
    args = (state.directions, data.observations, data.observed, outliers)
    value, grad = M.positions_value_and_grad(model, state.positions, *args)
    ref_value, ref_grad = jax.value_and_grad(lambda x: M.positions_log_prob(model, x, *args))(state.positions)
    assert float(value) == pytest.approx(float(ref_value), rel=1e-12)
    assert np.allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)
