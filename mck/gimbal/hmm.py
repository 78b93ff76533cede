"""Sampling a discrete state sequence from its HMM posterior: forward filtering, backward sampling (FFBS).

The lab's GIMBAL uses dynamax's associative-scan FFBS: O(N·S³) work (S×S matrix products per frame). Here the
forward pass is the ordinary O(N·S²) recursion on normalised probability vectors (a matrix–vector product per
frame), which is the same distribution at a fraction of the cost on CPUs. Long sequences are cut into blocks that
are sampled in parallel — even blocks given their neighbours' boundary states, then odd blocks — a valid blocked
Gibbs update that keeps the sequential depth at the block length on GPUs.

Shapes: ``log_likelihoods`` (N, S); ``initial`` π (S,); ``transition_matrix`` A (S, S), row = from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr


def _normalise(p):
    return p / jnp.sum(p, axis=-1, keepdims=True)


def _ffbs(key, likelihoods, prior, right_factor, transition_matrix):
    """One block. ``likelihoods`` (L, S) scaled to max 1 per row, ``prior`` (S,) distribution of the first state,
    ``right_factor`` (S,) = A[:, s_next] (ones if the block ends the sequence). Returns states (L,) int32."""

    def forward(filtered, lik):
        predicted = filtered @ transition_matrix
        joint = predicted * lik
        total = jnp.sum(joint)
        # If every state the prediction allows is impossible under the likelihood (underflow), trust the likelihood.
        filtered = jnp.where(total > 0, joint / jnp.where(total > 0, total, 1.0), _normalise(lik))
        return filtered, filtered

    first = prior * likelihoods[0]
    first = jnp.where(jnp.sum(first) > 0, _normalise(first), _normalise(likelihoods[0]))
    _, rest = jax.lax.scan(forward, first, likelihoods[1:])
    filtered = jnp.concatenate([first[None], rest], axis=0)                 # (L, S)
    return _backward_sample(key, filtered, right_factor, transition_matrix)


def _backward_sample(key, filtered, right_factor, transition_matrix):
    """Backward sampling from filtered distributions (L, S): s_{L−1} ∝ α ⊙ right_factor, s_t ∝ α_t ⊙ A[:, s_{t+1}]."""
    uniforms = jr.uniform(key, (filtered.shape[0],), dtype=filtered.dtype)

    def draw(p, u):
        cdf = jnp.cumsum(p)
        return jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), p.shape[0] - 1).astype(jnp.int32)

    last_p = filtered[-1] * right_factor
    last_p = jnp.where(jnp.sum(last_p) > 0, last_p, filtered[-1])
    last = draw(last_p, uniforms[-1])

    def backward(next_state, inputs):
        p, u = inputs
        weights = p * transition_matrix[:, next_state]
        weights = jnp.where(jnp.sum(weights) > 0, weights, p)
        state = draw(weights, u)
        return state, state

    _, earlier = jax.lax.scan(backward, last, (filtered[:-1], uniforms[:-1]), reverse=True)
    return jnp.concatenate([earlier, last[None]])


def _parallel_filter(likelihoods, prior, transition_matrix):
    """Filtered distributions (L, S) by an associative scan over S×S matrix products — the lab's (dynamax's)
    O(L·S³) formulation, kept as the benchmark baseline and for very wide accelerators."""
    first = prior * likelihoods[0]
    elements = transition_matrix[None] * likelihoods[1:, None, :]            # M_t[i, j] = A_ij lik_t(j)
    elements = jnp.concatenate([jnp.broadcast_to(first, elements.shape[1:])[None], elements])

    def combine(a, b):
        c = a @ b
        return c / jnp.max(c, axis=(-2, -1), keepdims=True)

    prefix = jax.lax.associative_scan(combine, elements)
    return _normalise(prefix[:, 0, :])


def sample_states(key, log_likelihoods, initial, transition_matrix, states, block_frames: int,
                  method: str = "sequential", batch_blocks: int = 8):
    """Draw s (N,) from p(s | ℓ, π, A) — exactly when N ≤ ``block_frames``; otherwise a blocked-Gibbs update of
    the current ``states`` (N,) in blocks of ``block_frames`` (static). ``method="parallel"`` filters with the
    lab's associative scan (same distribution, O(N·S³)). Returns (N,) int32.

    ``log_likelihoods``: (N, S), or a function ``frames (..., L) int → (..., L, S)`` that computes them for the
    frames asked (then ``states`` gives N). With a function, the per-state tensors only ever exist for
    ``batch_blocks`` blocks at a time (peak memory ∝ batch_blocks · block_frames · S, not N · S); each pass updates
    only the blocks of its parity (half the work of sampling every block and keeping half)."""
    n = states.shape[0]
    if not callable(log_likelihoods):
        table = log_likelihoods
        log_likelihoods = lambda frames: table[frames]  # noqa: E731
    dtype = initial.dtype
    num_states = initial.shape[0]

    def likelihoods_of(frames):
        valid = frames < n
        ll = log_likelihoods(jnp.minimum(frames, n - 1))
        lik = jnp.exp(ll - jnp.max(ll, axis=-1, keepdims=True))
        # Padded frames have a flat likelihood: summing them out leaves the real frames' posterior unchanged.
        return jnp.where(valid[..., None], lik, 1.0).astype(dtype)

    if method == "parallel":
        likelihoods = likelihoods_of(jnp.arange(n))
        filtered = _parallel_filter(likelihoods, initial, transition_matrix)
        return _backward_sample(key, filtered, jnp.ones(num_states, dtype), transition_matrix)
    if n <= block_frames:
        return _ffbs(key, likelihoods_of(jnp.arange(n)), initial, jnp.ones(num_states, dtype), transition_matrix)
    n_blocks = -(-n // block_frames)
    n_blocks += n_blocks % 2                                   # an even count: every parity has n_blocks / 2
    padded = n_blocks * block_frames
    half = n_blocks // 2
    batch = max(1, min(int(batch_blocks), half))
    n_batches = -(-half // batch)
    states = jnp.concatenate([states.astype(jnp.int32), jnp.zeros(padded - n, jnp.int32)])
    offsets = jnp.arange(block_frames)
    sampler = jax.vmap(_ffbs, in_axes=(0, 0, 0, 0, None))
    for parity, sub in enumerate(jr.split(key, 2)):
        # The blocks of this parity, padded to whole batches by repeating the last (its result is dropped).
        index = jnp.minimum(parity + 2 * jnp.arange(n_batches * batch), n_blocks - 1)
        starts = index * block_frames
        ends = starts + block_frames - 1
        left = states[jnp.maximum(starts - 1, 0)]
        right = states[jnp.minimum(ends + 1, padded - 1)]
        priors = jnp.where((starts > 0)[:, None], transition_matrix[left], initial[None])
        right_factors = jnp.where(((ends + 1) < n)[:, None], transition_matrix[:, right].T, 1.0)
        keys = jr.split(sub, n_batches * batch)

        def one_batch(args):
            k, s, prior, right_factor = args
            lik = likelihoods_of(s[:, None] + offsets[None])                  # (batch, L, S): the only per-state
            return sampler(k, lik, prior, right_factor, transition_matrix)     # tensors alive at once

        shaped = lambda a: a.reshape(n_batches, batch, *a.shape[1:])  # noqa: E731
        proposal = jax.lax.map(one_batch, (shaped(keys), shaped(starts), shaped(priors), shaped(right_factors)))
        proposal = proposal.reshape(n_batches * batch, block_frames)[:half]
        blocks = states.reshape(n_blocks, block_frames)
        states = blocks.at[parity + 2 * jnp.arange(half)].set(proposal).reshape(-1)
    return states[:n]


def transition_counts(states, num_states: int, dtype=jnp.float64):
    """n_ij = #{t : s_t = i, s_{t+1} = j}, (S, S) of ``dtype`` (float32 counts are exact up to 2²⁴ frames)."""
    return jnp.zeros((num_states, num_states), dtype).at[states[:-1], states[1:]].add(1.0)
