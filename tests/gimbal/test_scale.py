"""Session scale: block-wise state tensors, keypoints-only synthetic sessions, the scale benchmark's helpers."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import mck.gimbal  # noqa: F401  (x64)
from mck.gimbal.hmm import sample_states
from mck.synth.keypoints import animal_poses, keypoint_session


def _hmm(N=50, S=4, seed=0):
    rng = np.random.default_rng(seed)
    log_lik = jnp.asarray(rng.normal(scale=2.0, size=(N, S)))
    A = rng.uniform(0.1, 1, (S, S))
    A = jnp.asarray(A / A.sum(1, keepdims=True))
    pi = jnp.full(S, 1.0 / S)
    return log_lik, pi, A


def test_state_tensors_are_built_a_batch_of_blocks_at_a_time():
    """With a likelihood function the (frames, S) tensors are only requested for ``batch_blocks`` blocks at once;
    the draws equal those from the full table."""
    log_lik, pi, A = _hmm(N=50)
    states = jnp.zeros(50, jnp.int32)
    shapes = []

    def fn(frames):
        shapes.append(frames.shape)
        return log_lik[frames]

    key = jr.PRNGKey(3)
    a = sample_states(key, log_lik, pi, A, states, 8, batch_blocks=2)
    b = sample_states(key, fn, pi, A, states, 8, batch_blocks=2)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert shapes and all(s == (2, 8) for s in shapes)          # never (50,) or (n_blocks, 8)
    assert np.asarray(a).min() >= 0 and np.asarray(a).max() < 4


def test_blocked_update_moves_every_block():
    """Both parities are resampled: starting from a constant sequence, every block changes somewhere."""
    log_lik, pi, A = _hmm(N=64, S=3, seed=1)
    states = jnp.full(64, 0, jnp.int32)
    draws = np.stack([np.asarray(sample_states(k, log_lik * 5, pi, A, states, 8, batch_blocks=3))
                      for k in jr.split(jr.PRNGKey(0), 4)])
    changed = (draws != 0).reshape(4, 8, 8).any(axis=(0, 2))
    assert changed.all()


def test_state_log_likelihood_of_equals_the_table():
    from mck.gimbal import model as M
    from tests.gimbal.test_conditionals import tiny_params

    params = tiny_params(K=4, S_=3, C=2)
    model = M.make_model(params, np.tile(np.eye(3, 4), (2, 1, 1)))
    rng = np.random.default_rng(0)
    u = rng.normal(size=(7, 4, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    u[:, 0] = 0
    h = rng.uniform(-3, 3, 7)
    s = rng.integers(0, 3, 7)
    table = np.asarray(M.state_log_likelihoods(model, jnp.asarray(u), jnp.asarray(h)))
    own = np.asarray(M.state_log_likelihood_of(model, jnp.asarray(u), jnp.asarray(h), jnp.asarray(s)))
    np.testing.assert_allclose(own, table[np.arange(7), s], rtol=1e-12)


def test_keypoint_session_is_quick_deterministic_and_sized():
    a = keypoint_session(300, seed=2)
    b = keypoint_session(300, seed=2)
    assert a.uv.shape == (300, 6, 14, 2) and a.conf.shape == (300, 6, 14) and a.positions.shape == (300, 14, 3)
    assert np.array_equal(a.uv, b.uv, equal_nan=True)
    assert 0.02 < np.isnan(a.uv[..., 0]).mean() < 0.08 and 0.05 < a.is_outlier.mean() < 0.15
    rat = keypoint_session(100, seed=2, animal="rat", dtype=np.float32)
    assert rat.positions.shape == (100, 18, 3) and rat.uv.dtype == np.float32
    assert len(rat.parents) == 18 and np.all(rat.parents[1:] < np.arange(1, 18))
    # A long session is joined from segments: its poses stay in the arena and its steps stay small.
    x, _ = animal_poses(20000, seed=0)
    assert np.all(np.isfinite(x)) and np.abs(x[..., :2]).max() < 400
    with pytest.raises(ValueError, match="animal"):
        animal_poses(10, animal="cat")


def test_scale_benchmark_linearity_helper():
    from benchmarks.bench_gimbal_scale import linearity

    rows = [{"frames": f, "y": 2.0 + 0.001 * f} for f in (10_000, 50_000, 216_000)]
    assert linearity(rows, "y") < 1e-12
    rows[1]["y"] *= 2
    assert linearity(rows, "y") > 0.4
