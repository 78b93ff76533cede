"""Sampling and log-densities of the von Mises–Fisher distribution on S² and the von Mises distribution on S¹.

Pure, jittable functions; the PRNG key comes first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr

_SMALL_KAPPA = 1e-8


def vmf_log_normalizer(kappa):
    """log C₃(κ) = log κ − log(4π sinh κ) for vMF on S², elementwise; κ = 0 gives −log 4π. Stable for large κ."""
    kappa = jnp.asarray(kappa)
    small = kappa < _SMALL_KAPPA
    safe = jnp.where(small, 1.0, kappa)
    value = jnp.log(safe) - jnp.log(2 * jnp.pi) - safe - jnp.log1p(-jnp.exp(-2 * safe))
    return jnp.where(small, -jnp.log(4 * jnp.pi), value)


def vmf_log_prob(u, mu, kappa):
    """log vMF(u; μ, κ) on S². ``u``, ``mu``: (..., 3) unit vectors; ``kappa``: (...). A zero ``u`` (GIMBAL's root
    direction) with κ = 0 gives the constant −log 4π."""
    return vmf_log_normalizer(kappa) + kappa * jnp.sum(u * mu, axis=-1)


def sample_vmf(key, mean, kappa):
    """Draw u ~ vMF(mean, κ) on S² (Wood 1994 specialised to 3D: closed-form inverse CDF of w = μ·u).

    ``mean`` (..., 3) unit vectors, ``kappa`` (...) ≥ 0; returns (..., 3) unit vectors. κ → 0 gives the uniform
    distribution.
    """
    k_w, k_psi = jr.split(key)
    shape = jnp.shape(kappa)
    uniform = jr.uniform(k_w, shape, dtype=mean.dtype)
    small = kappa < _SMALL_KAPPA
    safe = jnp.where(small, 1.0, kappa)
    # δ = 1 − w = −log(U + (1 − U) e^{−2κ}) / κ, written with log1p/expm1 so neither end loses precision; the
    # radial part √(1 − w²) = √(δ (2 − δ)) from δ itself (1 − w² cancels catastrophically in float32 at large κ).
    delta = -jnp.log1p((1.0 - uniform) * jnp.expm1(-2.0 * safe)) / safe
    delta = jnp.clip(jnp.where(small, 2.0 * (1.0 - uniform), delta), 0.0, 2.0)
    w = 1.0 - delta
    psi = jr.uniform(k_psi, shape, dtype=mean.dtype, maxval=2 * jnp.pi)
    e1, e2 = _tangent_basis(mean)
    radial = jnp.sqrt(delta * (2.0 - delta))
    return (w[..., None] * mean
            + radial[..., None] * (jnp.cos(psi)[..., None] * e1 + jnp.sin(psi)[..., None] * e2))


def _tangent_basis(mean):
    """Two unit vectors orthogonal to ``mean`` (..., 3) and to each other."""
    use_y = jnp.abs(mean[..., 0]) > 0.9
    axis = jnp.where(use_y[..., None], jnp.array([0.0, 1.0, 0.0], mean.dtype), jnp.array([1.0, 0.0, 0.0], mean.dtype))
    e1 = axis - jnp.sum(axis * mean, axis=-1, keepdims=True) * mean
    e1 = e1 / jnp.linalg.norm(e1, axis=-1, keepdims=True)
    e2 = jnp.cross(mean, e1)
    return e1, e2


def sample_von_mises(key, loc, concentration):
    """Draw θ ~ vonMises(loc, κ) on the circle (Best & Fisher 1979 rejection sampler, all draws in parallel).

    ``loc``, ``concentration`` (...) radians / ≥ 0; returns angles in (−π, π]. κ ≈ 0 gives the uniform
    distribution. The acceptance rate is ≥ 66 % for every κ, so the loop ends after a few rounds.
    """
    shape = jnp.shape(concentration)
    out_dtype = jnp.result_type(loc, concentration, jnp.float32)
    # Best & Fisher's r − 1 ≈ 1/(2κ)... cancels in float32 for κ ≳ 10³; the draws are (N,)-sized, so they are made
    # in float64 whenever 64-bit JAX is on, whatever the chain's dtype.
    dtype = jnp.float64 if jax.config.jax_enable_x64 else out_dtype
    loc = jnp.asarray(loc, dtype)
    concentration = jnp.asarray(concentration, dtype)
    small = concentration < 1e-6
    kappa = jnp.where(small, 1.0, concentration)
    tau = 1.0 + jnp.sqrt(1.0 + 4.0 * kappa * kappa)
    rho = (tau - jnp.sqrt(2.0 * tau)) / (2.0 * kappa)
    r = (1.0 + rho * rho) / (2.0 * rho)

    def draw(key):
        k1, k2, k3 = jr.split(key, 3)
        u1, u2, u3 = (jr.uniform(k, shape, dtype=dtype) for k in (k1, k2, k3))
        z = jnp.cos(jnp.pi * u1)
        f = (1.0 + r * z) / (r + z)
        c = kappa * (r - f)
        accept = (c * (2.0 - c) - u2 > 0) | (jnp.log(c / u2) + 1.0 - c >= 0)
        theta = jnp.sign(u3 - 0.5) * jnp.arccos(jnp.clip(f, -1.0, 1.0))
        return theta, accept | small

    def cond(carry):
        return ~jnp.all(carry[1])

    def body(carry):
        theta, done, key = carry
        key, sub = jr.split(key)
        new_theta, accepted = draw(sub)
        theta = jnp.where(done, theta, new_theta)
        return theta, done | accepted, key

    key, sub = jr.split(key)
    theta, done = draw(sub)
    theta, _, key = jax.lax.while_loop(cond, body, (theta, done, key))
    uniform = jr.uniform(key, shape, dtype=dtype, minval=-jnp.pi, maxval=jnp.pi)
    theta = jnp.where(small, uniform, theta + loc)
    return jnp.arctan2(jnp.sin(theta), jnp.cos(theta)).astype(out_dtype)


def sample_gamma(key, shape_param):
    """Draw Gamma(a, 1) for every element of ``shape_param`` a > 0 (Marsaglia & Tsang 2000, all draws in parallel;
    a < 1 via Gamma(a + 1) · U^{1/a}). Much faster on CPUs than ``jax.random.gamma`` for large arrays."""
    a = jnp.asarray(shape_param)
    dtype = jnp.result_type(a, jnp.float32)
    boost = a < 1.0
    a1 = jnp.where(boost, a + 1.0, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)

    def draw(key):
        k1, k2 = jr.split(key)
        x = jr.normal(k1, a.shape, dtype=dtype)
        u = jr.uniform(k2, a.shape, dtype=dtype)
        v = (1.0 + c * x) ** 3
        safe_v = jnp.where(v > 0, v, 1.0)
        accept = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * safe_v + d * jnp.log(safe_v))
        return d * safe_v, accept

    def body(carry):
        value, done, key = carry
        key, sub = jr.split(key)
        new, accepted = draw(sub)
        return jnp.where(done, value, new), done | accepted, key

    key, sub, k_boost = jr.split(key, 3)
    value, done = draw(sub)
    value, _, _ = jax.lax.while_loop(lambda carry: ~jnp.all(carry[1]), body, (value, done, key))
    u = jr.uniform(k_boost, a.shape, dtype=dtype, minval=jnp.finfo(dtype).tiny)
    return jnp.where(boost, value * u ** (1.0 / jnp.where(boost, a, 1.0)), value)


def sample_dirichlet(key, concentration):
    """Rows of ``concentration`` (..., S) > 0 → Dirichlet draws (..., S) by normalised Gamma draws."""
    g = sample_gamma(key, concentration)
    return g / jnp.sum(g, axis=-1, keepdims=True)
