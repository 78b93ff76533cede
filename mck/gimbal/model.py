"""GIMBAL's model: parameter arrays and log-densities (docs/algorithms.md §C.3–C.4).

Shapes: N frames, C cameras, K keypoints (node order, root first), S pose states.
``positions`` x (N, K, 3) mm, world frame · ``directions`` u (N, K, 3) unit vectors, u[:, 0] = 0 ·
``headings`` h (N,) rad about world z · ``states`` s (N,) int · ``outliers`` z (N, C, K) bool ·
``observations`` y (N, C, K, 2) undistorted px, with ``observed`` (N, C, K) bool (missing views are masked out of
the likelihood — the lab's NaN defect, docs/algorithms.md §C.9, fixed).

Deliberate differences from the lab's code (each only matters where the lab's is wrong):
* the log joint uses log π_{s₀} and log A[s_t, s_{t+1}] (row = from), where the lab's trace adds Σ log π and
  indexes A[s_{t+1}, s_t] (docs/algorithms.md §C.4 quirk; the ``ll.npy`` trace differs by those terms, no sampling step);
* the skeletal factor is evaluated as Σ_k N(x_k; x_par(k) + r_k u_k, σ²_k I), which equals the lab's precision form
  −½xᵀJx + ηᵀx without its explicit, badly conditioned inverse; the ε = 1e-6 ridge is dropped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from mck.gimbal.distributions import vmf_log_normalizer

LOG_2PI = float(np.log(2 * np.pi))

#: The pipeline's values (docs/algorithms.md §C.3, §C.7).
ROOT_RADIAL_VARIANCE = 1e8
INITIAL_VARIANCE = 1e8
MIN_RADIAL_VARIANCE = 1e-2  # mm²: floor for bones whose fitted length never varies (HMC would be unstable)


class Model(NamedTuple):
    """Everything the sampler treats as fixed. A pytree of arrays (jit-friendly).

    camera_matrices (C, 3, 4): P_c = K_c [R_c | t_c], world mm → homogeneous undistorted px.
    obs_inlier_variance (C, K), or (N, C, K) for a variance per detection: px². obs_outlier_variance (C, K): px².
    parents (K,) int: parent's node index, parents[0] = 0.
    radii (K,) mm; radial_variance (K,) mm² (root: 1e8); dt_variance (K,) mm²/frame²; initial_variance (K,) mm².
    state_log_probability (S,): log π. state_directions μ (S, K, 3) unit, canonical (heading-free) frame.
    state_concentrations κ (S, K) ≥ 0. transition_count α (S,): Dirichlet pseudo-counts per destination.
    heading_keypoints (2,) int: (base, tip) nodes whose x–y direction initialises the heading.
    """

    camera_matrices: jnp.ndarray
    obs_inlier_variance: jnp.ndarray
    obs_outlier_variance: jnp.ndarray
    parents: jnp.ndarray
    radii: jnp.ndarray
    radial_variance: jnp.ndarray
    dt_variance: jnp.ndarray
    initial_variance: jnp.ndarray
    state_log_probability: jnp.ndarray
    state_directions: jnp.ndarray
    state_concentrations: jnp.ndarray
    transition_count: jnp.ndarray
    heading_keypoints: jnp.ndarray


def make_model(params: dict, camera_matrices, *, pos_dt_variance=1.0, obs_outlier_variance=1e6,
               state_transition_count=1.0, obs_inlier_variance=None, dtype="float64") -> Model:
    """Model arrays from a parameter dict in the lab's ``gimbal_params.p`` layout (docs/algorithms.md §C.8) and the cameras.

    Scalars or arrays broadcast: ``pos_dt_variance`` to (K,), ``obs_outlier_variance`` / ``obs_inlier_variance``
    (default: the dict's) to (C, K) — an (N, C, K) ``obs_inlier_variance`` is kept per detection —,
    ``state_transition_count`` to (S,).
    """
    P = np.asarray(camera_matrices, dtype=float)
    mus = np.asarray(params["mus"], dtype=float)
    S, K = mus.shape[:2]
    C = P.shape[0]
    parents = np.asarray(params["parents"], dtype=np.int32)
    if parents.shape != (K,) or parents[0] != 0 or np.any(parents[1:] >= np.arange(1, K)):
        raise ValueError(f"parents must have shape ({K},), parents[0] = 0 and parents[k] < k; got {parents.tolist()}")
    radii_std = np.asarray(params["radii_std"], dtype=float)
    radial_variance = np.concatenate([[ROOT_RADIAL_VARIANCE], np.maximum(radii_std[1:] ** 2, MIN_RADIAL_VARIANCE)])
    inlier = np.asarray(params["obs_inlier_variance"] if obs_inlier_variance is None else obs_inlier_variance,
                        dtype=float)
    inlier_shape = inlier.shape if inlier.ndim == 3 else (C, K)
    ego = np.asarray(params.get("indices_egocentric", [0, min(2, K - 1)]), dtype=np.int32)
    as_array = lambda a: jnp.asarray(a, dtype=dtype)  # noqa: E731
    return Model(
        camera_matrices=as_array(P),
        obs_inlier_variance=as_array(np.broadcast_to(inlier, inlier_shape)),
        obs_outlier_variance=as_array(np.broadcast_to(np.asarray(obs_outlier_variance, dtype=float), (C, K))),
        parents=jnp.asarray(parents),
        radii=as_array(np.asarray(params["radii"], dtype=float)),
        radial_variance=as_array(radial_variance),
        dt_variance=as_array(np.broadcast_to(np.asarray(pos_dt_variance, dtype=float), (K,))),
        initial_variance=as_array(np.full(K, INITIAL_VARIANCE)),
        state_log_probability=as_array(np.log(np.asarray(params["pis"], dtype=float))),
        state_directions=as_array(mus),
        state_concentrations=as_array(np.asarray(params["kappas"], dtype=float)),
        transition_count=as_array(np.broadcast_to(np.asarray(state_transition_count, dtype=float), (S,))),
        heading_keypoints=jnp.asarray(ego[:2]),
    )


def project(camera_matrices, positions):
    """Pinhole projection Π_c(x). ``camera_matrices`` (C, 3, 4), ``positions`` (N, K, 3) mm → (N, C, K, 2) px.

    Written as broadcast multiply-adds (not a batched matmul with a contraction of 3), which XLA fuses into one
    elementwise kernel together with its gradient.
    """
    x = positions[:, None, :, 0]
    y = positions[:, None, :, 1]
    z = positions[:, None, :, 2]

    def row(i):
        p = camera_matrices[:, i]
        return p[None, :, 0, None] * x + p[None, :, 1, None] * y + p[None, :, 2, None] * z + p[None, :, 3, None]

    depth = row(2)
    depth = jnp.where(jnp.abs(depth) < 1e-9, 1e-9, depth)   # a point in a camera's centre plane: finite, not NaN
    return jnp.stack([row(0) / depth, row(1) / depth], axis=-1)


def rotate_z(angle, vectors):
    """R_z(angle) v for ``vectors`` (..., K, 3) and ``angle`` (...) rad (counter-clockwise about +z)."""
    c, s = jnp.cos(angle)[..., None], jnp.sin(angle)[..., None]
    x, y = vectors[..., 0], vectors[..., 1]
    return jnp.stack([c * x - s * y, s * x + c * y, vectors[..., 2]], axis=-1)


def parent_offsets(model: Model, positions):
    """x_k − x_par(k) (N, K, 3); the root's row is x_0 (its 'parent' is the origin)."""
    parent_positions = positions[:, model.parents].at[:, 0].set(0.0)
    return positions - parent_positions


def observation_log_prob(model: Model, positions, observations, observed, outliers):
    """Σ log N₂(y − Π(x); 0, ω² I) with ω² = inlier or outlier variance by z; missing views contribute 0. (N, C, K)."""
    error = jnp.where(observed[..., None], observations - project(model.camera_matrices, positions), 0.0)
    variance = jnp.where(outliers, model.obs_outlier_variance, model.obs_inlier_variance)
    log_prob = -0.5 * jnp.sum(error ** 2, axis=-1) / variance - (LOG_2PI + jnp.log(variance))
    return jnp.where(observed, log_prob, 0.0)


def skeletal_log_prob(model: Model, positions, directions):
    """Σ_k log N(x_k; x_par(k) + r_k u_k, σ²_k I) per frame (N,); the root term is N(x_0; 0, σ²_0 I)."""
    residual = parent_offsets(model, positions) - model.radii[:, None] * directions
    sq = jnp.sum(residual ** 2, axis=-1)
    return jnp.sum(-0.5 * sq / model.radial_variance - 1.5 * (LOG_2PI + jnp.log(model.radial_variance)), axis=-1)


def accumulator_dtype(dtype):
    """The dtype that session-long sums are accumulated in: float64 whenever 64-bit JAX is on (a float32 sum of
    10⁷ terms of size 10² keeps no digit after the point), else ``dtype``."""
    import jax

    return jnp.float64 if jax.config.jax_enable_x64 else dtype


def dynamics_log_prob(model: Model, positions, dtype=None):
    """Gaussian random walk Σ_t log N(x_{t+1}; x_t, τ² I) + log N(x_0; 0, 1e8 I), a scalar (summed in ``dtype``)."""
    step = jnp.sum((positions[1:] - positions[:-1]) ** 2, axis=-1)
    walk = jnp.sum(-0.5 * step / model.dt_variance - 1.5 * (LOG_2PI + jnp.log(model.dt_variance)), dtype=dtype)
    first = jnp.sum(-0.5 * jnp.sum(positions[0] ** 2, axis=-1) / model.initial_variance
                    - 1.5 * (LOG_2PI + jnp.log(model.initial_variance)))
    return walk + first


def positions_log_prob(model: Model, positions, directions, observations, observed, outliers):
    """The log joint as a function of the positions (everything else fixed): the HMC target, a scalar."""
    return (jnp.sum(observation_log_prob(model, positions, observations, observed, outliers))
            + jnp.sum(skeletal_log_prob(model, positions, directions))
            + dynamics_log_prob(model, positions))


def state_log_likelihoods(model: Model, directions, headings):
    """ℓ_t(s) = Σ_k log vMF(R_z(−h_t) u_tk; μ_sk, κ_sk), (..., S) for ``directions`` (..., K, 3) and ``headings``
    (...). The root (u = 0, κ = 0) adds a constant."""
    canonical = rotate_z(-headings, directions)
    weighted_means = model.state_concentrations[..., None] * model.state_directions      # (S, K, 3)
    return (jnp.einsum("...kd,skd->...s", canonical, weighted_means)
            + jnp.sum(vmf_log_normalizer(model.state_concentrations), axis=-1))


def state_log_likelihood_of(model: Model, directions, headings, states):
    """ℓ_t(s_t) (N,): :func:`state_log_likelihoods` at each frame's own state only (no (N, S) tensor)."""
    canonical = rotate_z(-headings, directions)
    weighted_means = model.state_concentrations[states][..., None] * model.state_directions[states]  # (N, K, 3)
    return (jnp.sum(canonical * weighted_means, axis=(-2, -1))
            + jnp.sum(vmf_log_normalizer(model.state_concentrations), axis=-1)[states])


def log_joint(model: Model, positions, directions, headings, states, transition_matrix, outliers,
              observations, observed, outlier_probability):
    """The full log joint (docs/algorithms.md §C.4, with the trace quirks fixed — see the module docstring), a
    scalar, summed in :func:`accumulator_dtype` (float64 for float32 chains too)."""
    acc = accumulator_dtype(positions.dtype)
    log_rho = jnp.log(outlier_probability)
    log_not_rho = jnp.log1p(-outlier_probability)
    bernoulli = jnp.where(observed, jnp.where(outliers, log_rho, log_not_rho), 0.0)
    state_terms = (jnp.sum(state_log_likelihood_of(model, directions, headings, states), dtype=acc)
                   + model.state_log_probability[states[0]].astype(acc)
                   + jnp.sum(jnp.log(transition_matrix[states[:-1], states[1:]]), dtype=acc))
    positions_terms = (jnp.sum(observation_log_prob(model, positions, observations, observed, outliers), dtype=acc)
                       + jnp.sum(skeletal_log_prob(model, positions, directions), dtype=acc)
                       + dynamics_log_prob(model, positions, acc))
    return positions_terms + jnp.sum(bernoulli, dtype=acc) + state_terms


def positions_value_and_grad(model: Model, positions, directions, observations, observed, outliers):
    """:func:`positions_log_prob` and its gradient (N, K, 3), by hand (docs/algorithms.md §C.6 step 1's formulas) so that
    each term is one fused elementwise pass — several times faster than reverse-mode autodiff on CPUs.
    ``tests/gimbal`` checks it against ``jax.grad``."""
    obs, skel, steps, initial, grad = _positions_terms(model, positions, directions, observations, observed, outliers)
    return obs.sum() + skel.sum() + steps.sum() + initial, grad


def positions_terms_and_grad(model: Model, positions, directions, observations, observed, outliers):
    """:func:`positions_log_prob` as a vector of terms whose sum it is — per frame observations + skeleton (N,),
    the N − 1 random-walk steps, the initial prior — and the gradient (N, K, 3). The HMC energy difference is
    taken term by term (``Σ (terms₁ − terms₀)``), which float32 resolves where the difference of two session-long
    sums (≈ 10⁷ each) would not."""
    obs, skel, steps, initial, grad = _positions_terms(model, positions, directions, observations, observed, outliers)
    return jnp.concatenate([obs + skel, steps, initial[None]]), grad


def positions_frame_values_and_grad(model: Model, positions, directions, observations, observed, outliers):
    """Per frame t, the terms of :func:`positions_log_prob` that involve x_t — observations, skeleton, the random-walk
    steps into and out of t (and the initial prior at t = 0) — as (N,), and the gradient (N, K, 3). Each step term
    appears in two frames' values, so ``values.sum()`` is the log prob only after removing that double count; the
    sampler uses the values of every other frame at a time (frames whose neighbours are held fixed), where it is
    exact."""
    obs, skel, steps, initial, grad = _positions_terms(model, positions, directions, observations, observed, outliers)
    none = jnp.zeros((1,), positions.dtype)
    return obs + skel + (jnp.concatenate([none, steps]) + jnp.concatenate([steps, none])).at[0].add(initial), grad


def _positions_terms(model: Model, positions, directions, observations, observed, outliers):
    """Per-frame observation and skeleton terms (N,), random-walk step terms (N − 1,), the initial prior (scalar),
    and the gradient of their sum (N, K, 3)."""
    P = model.camera_matrices
    x, y, z = (positions[:, None, :, d] for d in range(3))                  # (N, 1, K)

    def row(i):
        p = P[:, i]
        return p[None, :, 0, None] * x + p[None, :, 1, None] * y + p[None, :, 2, None] * z + p[None, :, 3, None]

    depth = row(2)
    depth = jnp.where(jnp.abs(depth) < 1e-9, 1e-9, depth)
    pu, pv = row(0) / depth, row(1) / depth
    eu = jnp.where(observed, observations[..., 0] - pu, 0.0)
    ev = jnp.where(observed, observations[..., 1] - pv, 0.0)
    variance = jnp.where(outliers, model.obs_outlier_variance, model.obs_inlier_variance)
    weight = jnp.where(observed, 1.0 / variance, 0.0)
    obs_value = jnp.sum(-0.5 * weight * (eu * eu + ev * ev)
                        - jnp.where(observed, LOG_2PI + jnp.log(variance), 0.0), axis=(1, 2))
    a, b = weight * eu / depth, weight * ev / depth                          # (N, C, K)
    c = a * pu + b * pv
    obs_grad = jnp.stack([jnp.sum(a * P[None, :, 0, d, None] + b * P[None, :, 1, d, None]
                                  - c * P[None, :, 2, d, None], axis=1) for d in range(3)], axis=-1)

    residual = parent_offsets(model, positions) - model.radii[:, None] * directions
    scaled = residual / model.radial_variance[:, None]                       # (N, K, 3)
    skel_value = jnp.sum(-0.5 * jnp.sum(residual * scaled, axis=-1)
                         - 1.5 * (LOG_2PI + jnp.log(model.radial_variance)), axis=-1)
    skel_grad = (-scaled).at[:, model.parents[1:]].add(scaled[:, 1:])

    step = (positions[1:] - positions[:-1]) / model.dt_variance[:, None]
    step_value = jnp.sum(-0.5 * jnp.sum((positions[1:] - positions[:-1]) * step, axis=-1)
                         - 1.5 * (LOG_2PI + jnp.log(model.dt_variance)), axis=-1)           # (N − 1,)
    initial_value = jnp.sum(-0.5 * jnp.sum(positions[0] ** 2, axis=-1) / model.initial_variance
                            - 1.5 * (LOG_2PI + jnp.log(model.initial_variance)))
    zero = jnp.zeros_like(positions[:1])
    dyn_grad = jnp.concatenate([step, zero]) - jnp.concatenate([zero, step])
    dyn_grad = dyn_grad.at[0].add(-positions[0] / model.initial_variance[:, None])
    return obs_value, skel_value, step_value, initial_value, obs_grad + skel_grad + dyn_grad
