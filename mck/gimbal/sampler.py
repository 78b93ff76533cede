"""GIMBAL's Gibbs sweep (docs/algorithms.md §C.6): one ``resample_*`` function per conditional, in the lab's order,
plus :func:`initialize`, :func:`run_iterations` (a jitted chunk of sweeps, resumable) and :func:`smooth`.

Randomness: iteration ``i`` uses ``split(fold_in(PRNGKey(seed), i), 6)`` — one key per sub-step — so a run that is
stopped after any iteration and resumed from its state gives exactly the samples of an uninterrupted run.

Deliberate differences from the lab's code (docs/algorithms.md §E): missing views are masked out of the likelihood
(quirk 8); the heading conditional weights each keypoint by κ (the exact conditional; quirk 5 — pass
``exact_heading=False`` for the lab's unweighted version); the initial heading points from the heading base to the
tip keypoint as in the fitted canonical frame (quirk 6). Beyond the quirks: positions are updated by HMC with one
Metropolis decision per frame (the even frames on even iterations, the odd ones on odd iterations — exact given the
first-order random walk) instead of one for the whole session, whose acceptance falls with the session's length
(``position_update="joint"`` is the lab's).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from mck.gimbal import model as M
from mck.gimbal.distributions import sample_dirichlet, sample_vmf, sample_von_mises
from mck.gimbal.hmm import sample_states, transition_counts
from mck.gimbal.model import Model


POSITION_UPDATES = ("frames", "joint")
NOT_CONVERGED = 2 ** 31 - 1


class Data(NamedTuple):
    """Observations (fixed during sampling). ``observations`` (N, C, K, 2) undistorted px with missing views set
    to 0; ``observed`` (N, C, K) bool; ``outlier_probability`` ρ (N, C, K) in (0, 1) (1 where missing)."""

    observations: jnp.ndarray
    observed: jnp.ndarray
    outlier_probability: jnp.ndarray


class SamplerState(NamedTuple):
    """The chain's state plus the running posterior-mean accumulator."""

    positions: jnp.ndarray          # (N, K, 3) mm
    outliers: jnp.ndarray           # (N, C, K) bool
    directions: jnp.ndarray         # (N, K, 3) unit; root row 0
    headings: jnp.ndarray           # (N,) rad
    states: jnp.ndarray             # (N,) int32
    transition_matrix: jnp.ndarray  # (S, S) row-stochastic, row = from
    positions_sum: jnp.ndarray      # (N, K, 3) Σ of kept samples
    samples_kept: jnp.ndarray       # () int
    accepted: jnp.ndarray           # () float: HMC acceptances so far (fractions of frames for "frames" updates)
    converged_at: jnp.ndarray       # () int32: iteration the convergence check passed (burn-in ends there) or 2³¹−1


@dataclass(frozen=True)
class SweepOptions:
    """Static (compile-time) sampler settings."""

    step_size: float = 0.2
    num_leapfrog_steps: int = 5
    exact_heading: bool = True
    state_block_frames: int = 4096
    state_batch_blocks: int = 8        # blocks whose (block_frames, S) state tensors exist at once
    state_filter: str = "sequential"   # or "parallel": the lab's O(N·S³) associative scan (benchmark baseline)
    burn_in: int = 4000
    thin: int = 5
    position_update: str = "frames"    # or "joint": the lab's one accept/reject for the whole session


# ----------------------------------------------------------------------------------------------- conditionals
def _leapfrog(value_and_grad, x0, p0, eps, num_leapfrog_steps: int, mask=1.0):
    """``num_leapfrog_steps`` leapfrog steps of size ``eps`` from (x0, p0), the momentum kicks multiplied by ``mask``
    (0 holds a coordinate fixed). Returns (x1, p1, log p(x0), log p(x1)), the log p as ``value_and_grad`` gives it (a
    scalar or one value per frame)."""
    logp0, grad0 = value_and_grad(x0)

    def step(carry, _):
        x, p, grad, _ = carry
        p = p + 0.5 * eps * grad * mask
        x = x + eps * p
        logp, grad = value_and_grad(x)
        p = p + 0.5 * eps * grad * mask
        return (x, p, grad, logp), None

    (x1, p1, _, logp1), _ = jax.lax.scan(step, (x0, p0, grad0, logp0), None, length=num_leapfrog_steps)
    return x1, p1, logp0, logp1


def resample_positions(key, model: Model, data: Data, state: SamplerState, step_size, num_leapfrog_steps: int):
    """One HMC transition for all positions jointly (identity mass, ``num_leapfrog_steps`` leapfrog steps of size
    ``step_size`` mm — a scalar or (K,)), Metropolis-corrected; NaN proposals are rejected.
    Returns (positions (N, K, 3), accepted bool)."""
    eps = jnp.broadcast_to(jnp.asarray(step_size, state.positions.dtype), (state.positions.shape[1],))[:, None]

    def value_and_grad(x):
        return M.positions_terms_and_grad(model, x, state.directions, data.observations, data.observed,
                                          state.outliers)

    k_momentum, k_accept = jr.split(key)
    x0 = state.positions
    p0 = jr.normal(k_momentum, x0.shape, dtype=x0.dtype)
    x1, p1, logp0, logp1 = _leapfrog(value_and_grad, x0, p0, eps, num_leapfrog_steps)
    # Energy difference term by term (exact in float32; the difference of two sums over the session is not).
    acc = M.accumulator_dtype(x0.dtype)
    log_ratio = jnp.sum(logp1 - logp0, dtype=acc) - 0.5 * jnp.sum((p1 - p0) * (p1 + p0), dtype=acc)
    accept = jnp.isfinite(log_ratio) & (jnp.log(jr.uniform(k_accept, dtype=x0.dtype)) < log_ratio)
    return jnp.where(accept, x1, x0), accept


def resample_positions_by_frames(key, model: Model, data: Data, state: SamplerState, step_size,
                                 num_leapfrog_steps: int, parity):
    """One HMC transition for the frames t with t % 2 == ``parity``, the others held fixed. Given its neighbours,
    each frame's positions are conditionally independent of all others (the random walk is first order), so every
    moving frame gets its own Metropolis decision; the sweep alternates the parity, so every frame moves every other
    iteration at the cost of one joint update. The lab's joint update (:func:`resample_positions`) makes one decision
    for all N·K·3 coordinates, whose acceptance falls with the session's length and can stay at 0 (the chain then
    silently returns its initialisation). Returns (positions (N, K, 3), fraction of the moving frames accepted)."""
    N, K = state.positions.shape[:2]
    eps = jnp.broadcast_to(jnp.asarray(step_size, state.positions.dtype), (K,))[:, None]
    moving = (jnp.arange(N) % 2 == parity)                                     # (N,)
    mask = moving[:, None, None].astype(state.positions.dtype)

    def value_and_grad(x):
        return M.positions_frame_values_and_grad(model, x, state.directions, data.observations, data.observed,
                                                 state.outliers)

    k_momentum, k_accept = jr.split(key)
    x0 = state.positions
    p0 = jr.normal(k_momentum, x0.shape, dtype=x0.dtype) * mask
    x1, p1, logp0, logp1 = _leapfrog(value_and_grad, x0, p0, eps, num_leapfrog_steps, mask)
    log_ratio = (logp1 - logp0) - 0.5 * jnp.sum((p1 - p0) * (p1 + p0), axis=(1, 2))
    accept = moving & jnp.isfinite(log_ratio) & (jnp.log(jr.uniform(k_accept, (N,), dtype=x0.dtype)) < log_ratio)
    return jnp.where(accept[:, None, None], x1, x0), jnp.sum(accept) / jnp.maximum(jnp.sum(moving), 1)


def resample_outliers(key, model: Model, data: Data, positions):
    """z ~ p(z | x, y, ρ) independently per (frame, camera, keypoint); missing views are outliers. (N, C, K) bool."""
    error = data.observations - M.project(model.camera_matrices, positions)
    sq = jnp.sum(error ** 2, axis=-1)

    def log_normal(variance):
        return -0.5 * sq / variance - (M.LOG_2PI + jnp.log(variance))

    rho = data.outlier_probability
    logit = (jnp.log(rho) + log_normal(model.obs_outlier_variance)
             - jnp.log1p(-rho) - log_normal(model.obs_inlier_variance))
    draw = jr.uniform(key, logit.shape, dtype=positions.dtype) < jax.nn.sigmoid(logit)
    return jnp.where(data.observed, draw, True)


def resample_directions(key, model: Model, positions, headings, states):
    """u_tk ~ vMF(m/‖m‖, ‖m‖), m = κ_{s_t,k} R_z(h_t) μ_{s_t,k} + (r_k/σ²_k)(x_tk − x_t,par(k)); u_t0 = 0. (N, K, 3)."""
    prior = model.state_concentrations[states][..., None] * M.rotate_z(headings, model.state_directions[states])
    likelihood = (model.radii / model.radial_variance)[:, None] * M.parent_offsets(model, positions)
    natural = prior + likelihood
    concentration = jnp.linalg.norm(natural, axis=-1)
    mean = natural / jnp.where(concentration > 0, concentration, 1.0)[..., None]
    mean = jnp.where((concentration > 0)[..., None], mean, jnp.array([1.0, 0.0, 0.0], positions.dtype))
    directions = sample_vmf(key, mean, concentration)
    return directions.at[:, 0].set(0.0)


def resample_headings(key, model: Model, directions, states, exact: bool = True):
    """h_t ~ vonMises(atan2(S_t, C_t), √(S_t² + C_t²)) with S_t, C_t the (κ-weighted if ``exact``) sums of
    sin/cos of the azimuth differences between u_tk and μ_{s_t,k}, weighted by their x–y lengths. (N,) rad."""
    mu = model.state_directions[states]                                     # (N, K, 3)
    weight = model.state_concentrations[states] if exact else jnp.ones(mu.shape[:2], mu.dtype)
    sin_sum = jnp.sum(weight * (mu[..., 0] * directions[..., 1] - mu[..., 1] * directions[..., 0]), axis=-1)
    cos_sum = jnp.sum(weight * (mu[..., 0] * directions[..., 0] + mu[..., 1] * directions[..., 1]), axis=-1)
    return sample_von_mises(key, jnp.arctan2(sin_sum, cos_sum), jnp.hypot(sin_sum, cos_sum))


def resample_states(key, model: Model, directions, headings, states, transition_matrix, block_frames: int,
                    method: str = "sequential", batch_blocks: int = 8):
    """Pose states from their HMM posterior given directions and headings (FFBS, :mod:`mck.gimbal.hmm`). (N,)."""
    def log_lik(frames):   # (..., L) → (..., L, S), evaluated a batch of blocks at a time inside sample_states
        return M.state_log_likelihoods(model, directions[frames], headings[frames])

    initial = jnp.exp(model.state_log_probability)
    return sample_states(key, log_lik, initial, transition_matrix, states, block_frames, method, batch_blocks)


def resample_transition_matrix(key, model: Model, states):
    """Each row A_i ~ Dirichlet(α + n_i·), n_ij the observed i→j transitions. (S, S)."""
    num_states = model.state_log_probability.shape[0]
    concentration = model.transition_count[None, :] + transition_counts(states, num_states,
                                                                         model.transition_count.dtype)
    return sample_dirichlet(key, concentration)


# ----------------------------------------------------------------------------------------------- the chain
def iteration_keys(seed: int, iteration):
    """The six sub-step keys of iteration ``iteration`` (jittable)."""
    return jr.split(jr.fold_in(jr.PRNGKey(seed), iteration), 6)


def sweep(keys, model: Model, data: Data, state: SamplerState, options: SweepOptions, iteration=0) -> SamplerState:
    """One MCMC sweep in the lab's order: positions, outliers, directions, headings, states, transitions.
    ``iteration`` picks the frames the "frames" position update moves (its parity)."""
    if options.position_update == "frames":
        positions, accepted = resample_positions_by_frames(keys[0], model, data, state, options.step_size,
                                                           options.num_leapfrog_steps, iteration % 2)
    else:
        positions, accepted = resample_positions(keys[0], model, data, state, options.step_size,
                                                 options.num_leapfrog_steps)
    outliers = resample_outliers(keys[1], model, data, positions)
    directions = resample_directions(keys[2], model, positions, state.headings, state.states)
    headings = resample_headings(keys[3], model, directions, state.states, options.exact_heading)
    states = resample_states(keys[4], model, directions, headings, state.states, state.transition_matrix,
                             options.state_block_frames, options.state_filter, options.state_batch_blocks)
    transition_matrix = resample_transition_matrix(keys[5], model, states)
    return state._replace(positions=positions, outliers=outliers, directions=directions, headings=headings,
                          states=states, transition_matrix=transition_matrix,
                          accepted=state.accepted + jnp.asarray(accepted, state.accepted.dtype))


def log_joint(model: Model, data: Data, state: SamplerState):
    """The chain's current log joint (scalar)."""
    return M.log_joint(model, state.positions, state.directions, state.headings, state.states,
                       state.transition_matrix, state.outliers, data.observations, data.observed,
                       data.outlier_probability)


@functools.partial(jax.jit, static_argnames=("options", "seed", "length"))
def _run_chunk(model, data, state, start, stop, watch, *, options: SweepOptions, seed: int, length: int):
    """Iterations start … stop−1 (dynamic, stop − start ≤ ``length``): one compilation serves every chunk.
    Samples are kept after min(``options.burn_in``, ``state.converged_at``)."""
    def body(iteration, carry):
        state, trace, watched = carry
        state = sweep(iteration_keys(seed, iteration), model, data, state, options, iteration)
        burn_in = jnp.minimum(options.burn_in, state.converged_at)
        keep = (iteration > burn_in) & (iteration % options.thin == 0)
        state = state._replace(positions_sum=state.positions_sum + jnp.where(keep, state.positions, 0.0),
                               samples_kept=state.samples_kept + keep.astype(state.samples_kept.dtype))
        trace = trace.at[iteration - start].set(log_joint(model, data, state))
        watched = watched.at[iteration - start].set(state.positions.reshape(-1)[watch])
        return state, trace, watched

    trace = jnp.full(length, jnp.nan, dtype=M.accumulator_dtype(state.positions.dtype))
    watched = jnp.full((length, watch.shape[0]), jnp.nan, dtype=state.positions.dtype)
    return jax.lax.fori_loop(start, stop, body, (state, trace, watched))


def run_iterations(model: Model, data: Data, state: SamplerState, start: int, stop: int, *, seed: int,
                   options: SweepOptions, length: int | None = None, watch=None):
    """Run iterations ``start … stop−1``; returns the new state and their log-joint trace (stop − start,).
    ``length`` ≥ stop − start (default: exactly that) fixes the compiled chunk size, so equal ``length`` calls
    share one compilation. With ``watch`` (m,) flat indices into the positions, also returns their values at
    every iteration (stop − start, m) (the convergence diagnostic's draws)."""
    count = int(stop - start)
    indices = jnp.asarray(np.zeros(0, np.int64) if watch is None else watch)
    state, trace, watched = _run_chunk(model, data, state, jnp.asarray(start, jnp.int32),
                                       jnp.asarray(stop, jnp.int32), indices, options=options, seed=int(seed),
                                       length=int(length or count))
    if watch is None:
        return state, np.asarray(trace)[:count]
    return state, np.asarray(trace)[:count], np.asarray(watched)[:count]


def initialize(key, model: Model, data: Data, init_positions) -> SamplerState:
    """The lab's initialisation (docs/algorithms.md §C.5): positions (N, K, 3) given; z ~ Bernoulli(ρ) (missing → 1); directions from
    the positions; heading from the (base → tip) heading keypoints in the x–y plane; states uniform; A = 1/S."""
    k_outliers, k_states = jr.split(key)
    x = jnp.asarray(init_positions, dtype=model.radii.dtype)
    outliers = (jr.uniform(k_outliers, data.observed.shape, dtype=x.dtype) < data.outlier_probability)
    outliers = jnp.where(data.observed, outliers, True)
    offsets = M.parent_offsets(model, x)
    directions = offsets / (jnp.linalg.norm(offsets, axis=-1, keepdims=True) + 1e-16)
    directions = directions.at[:, 0].set(0.0)
    base, tip = model.heading_keypoints[0], model.heading_keypoints[1]
    spine = x[:, tip] - x[:, base]
    headings = jnp.arctan2(spine[:, 1], spine[:, 0])
    num_states = model.state_log_probability.shape[0]
    states = jr.randint(k_states, (x.shape[0],), 0, num_states, dtype=jnp.int32)
    transition_matrix = jnp.full((num_states, num_states), 1.0 / num_states, dtype=x.dtype)
    return SamplerState(positions=x, outliers=outliers, directions=directions, headings=headings, states=states,
                        transition_matrix=transition_matrix, positions_sum=jnp.zeros_like(x),
                        samples_kept=jnp.zeros((), jnp.int32), accepted=jnp.zeros((), x.dtype),
                        converged_at=jnp.asarray(NOT_CONVERGED, jnp.int32))


def make_data(observations, outlier_probability, dtype="float64") -> Data:
    """Data from observations (N, C, K, 2) undistorted px with NaN = missing and ρ (N, C, K) (NaN → 1)."""
    y = np.asarray(observations, dtype=float)
    observed = np.isfinite(y).all(-1)
    rho = np.asarray(outlier_probability, dtype=float)
    rho = np.where(observed & np.isfinite(rho), np.clip(rho, 1e-6, 1 - 1e-6), 1 - 1e-6)
    return Data(observations=jnp.asarray(np.where(observed[..., None], y, 0.0), dtype=dtype),
                observed=jnp.asarray(observed), outlier_probability=jnp.asarray(rho, dtype=dtype))


# ----------------------------------------------------------------------------------------------- one call
@dataclass
class SmoothResult:
    """``positions`` (N, K, 3) mm: posterior mean of the kept samples (node order, world frame);
    ``log_likelihood`` (iterations,): the log-joint trace; ``acceptance_rate``: HMC acceptance over all iterations;
    ``samples``: number of kept samples; ``state``: the final chain state (for resuming); ``iterations`` run
    (fewer than asked when the chain stopped at convergence); ``diagnostics``: one convergence summary per chunk
    (:func:`mck.gimbal.convergence.diagnose` plus ``iteration``); ``converged_at``: the iteration the check first
    passed (None if never)."""

    positions: np.ndarray
    log_likelihood: np.ndarray
    acceptance_rate: float
    samples: int
    state: SamplerState
    iterations: int = 0
    diagnostics: list = field(default_factory=list)
    converged_at: int | None = None


def smooth(uv, conf, camera_matrices, params: dict, n_iters: int = 1000, seed: int = 0, *,
           chunk_iters: int = 250, callback=None, stop_when_converged: bool = False, rhat_threshold: float = 1.05,
           min_ess: float = 50.0, watch_frames: int = 16, **options) -> SmoothResult:
    """Smooth 2D detections into 3D with GIMBAL.

    ``uv`` (N, C, K, 2) undistorted px in node order, NaN = missing; ``conf`` (N, C, K) detector confidences or
    None (then ρ = ``outlier_prob`` everywhere); ``camera_matrices`` (C, 3, 4) = K·[R|t]; ``params`` the lab's
    parameter dict (:func:`mck.gimbal.load_params`). Keywords: see :func:`prepare_chain` and :func:`run_chain`.
    ``callback(state, iteration, trace)`` runs after every ``chunk_iters`` iterations (checkpointing); it may raise
    to stop. Returns the posterior mean of the kept samples and the log-joint trace.
    """
    model, data, state, sweep_options = prepare_chain(uv, conf, camera_matrices, params, n_iters=n_iters, seed=seed,
                                                      **options)
    return run_chain(model, data, state, n_iters, seed=seed, options=sweep_options, chunk_iters=chunk_iters,
                     callback=callback, stop_when_converged=stop_when_converged, rhat_threshold=rhat_threshold,
                     min_ess=min_ess, watch_frames=watch_frames)


def prepare_chain(uv, conf, camera_matrices, params: dict, n_iters: int = 1000, seed: int = 0, *,
                  burn_in: int | None = None, thin: int = 5, init_positions=None, outlier_prob=0.1,
                  conf_center: float = 0.5, conf_gain: float = 20.0, pos_dt_variance=1.0,
                  obs_outlier_variance=1e6, obs_inlier_variance=None, obs_inlier_conf_exponent: float = 0.0,
                  step_size=0.2, num_leapfrog_steps: int = 5,
                  state_transition_count=1.0, exact_heading: bool = True, state_block_frames: int = 4096,
                  state_batch_blocks: int = 8, state_filter: str = "sequential", position_update: str = "frames",
                  dtype: str = "float64") -> tuple[Model, Data, SamplerState, SweepOptions]:
    """Model, data, initial state and static options for a chain (pipeline values as defaults, docs/algorithms.md §C.3/C.7).

    ``init_positions`` (N, K, 3) mm default: DLT triangulation of ``uv``; gaps are interpolated either way.
    ρ = clip(sigmoid(``conf_gain`` · (``conf_center`` − conf))). With ``obs_inlier_conf_exponent`` α > 0 each
    detection's inlier variance is ``obs_inlier_variance`` · conf^−α (the fitted observation model,
    :mod:`mck.gimbal.observation_fit`; α = 0 is the lab's one variance per camera and keypoint).
    ``burn_in`` default: 80 % of ``n_iters`` (the lab's 4000 of 5000); samples with ``i > burn_in`` and
    ``i % thin == 0`` are averaged. ``pos_dt_variance`` scalar or (K,); ``obs_*_variance`` scalar or (C, K); ``step_size`` scalar or (K,); ``state_transition_count`` scalar or
    (S,). ``exact_heading=False`` reproduces the lab's unweighted heading conditional; ``position_update="joint"``
    the lab's single accept/reject for all positions (default "frames": one per frame, see
    :func:`resample_positions_by_frames`).
    """
    from mck.gimbal.prepare import interpolate_positions, outlier_probability, triangulate_dlt

    if position_update not in POSITION_UPDATES:
        raise ValueError(f"position_update must be one of {POSITION_UPDATES}, got {position_update!r}")

    uv = np.asarray(uv, dtype=float)
    P = np.asarray(camera_matrices, dtype=float)
    if uv.ndim != 4 or uv.shape[-1] != 2 or P.shape != (uv.shape[1], 3, 4):
        raise ValueError(f"uv must be (frames, cameras, keypoints, 2) and camera_matrices (cameras, 3, 4); got "
                         f"{uv.shape} and {P.shape}")
    if conf is None:
        rho = np.full(uv.shape[:3], float(outlier_prob))
    else:
        rho = outlier_probability(np.asarray(conf, dtype=float), center=conf_center, gain=conf_gain)
    if float(obs_inlier_conf_exponent) != 0.0 and conf is not None:
        from mck.gimbal.observation_fit import inlier_variance_scale

        base = np.asarray(params["obs_inlier_variance"] if obs_inlier_variance is None else obs_inlier_variance,
                          dtype=float)
        obs_inlier_variance = (np.broadcast_to(base, uv.shape[1:3])[None]
                               * inlier_variance_scale(conf, obs_inlier_conf_exponent))
    model = M.make_model(params, P, pos_dt_variance=pos_dt_variance, obs_outlier_variance=obs_outlier_variance,
                         obs_inlier_variance=obs_inlier_variance, state_transition_count=state_transition_count,
                         dtype=dtype)
    if model.radii.shape[0] != uv.shape[2]:
        raise ValueError(f"parameters have {model.radii.shape[0]} keypoints, observations {uv.shape[2]}")
    data = make_data(uv, rho, dtype=dtype)
    if init_positions is None:
        init_positions = triangulate_dlt(uv, P)
    step = float(step_size) if np.ndim(step_size) == 0 else tuple(np.asarray(step_size, dtype=float).tolist())
    options = SweepOptions(step_size=step, num_leapfrog_steps=int(num_leapfrog_steps),
                           exact_heading=bool(exact_heading), state_block_frames=int(state_block_frames),
                           state_batch_blocks=int(state_batch_blocks), position_update=str(position_update),
                           state_filter=str(state_filter), burn_in=int(n_iters * 0.8) if burn_in is None else int(burn_in), thin=int(thin))
    state = initialize(jr.PRNGKey(seed), model, data, interpolate_positions(np.asarray(init_positions)))
    return model, data, state, options


def run_chain(model: Model, data: Data, state: SamplerState, n_iters: int, *, seed: int, options: SweepOptions,
              start: int = 0, trace: np.ndarray | None = None, chunk_iters: int = 250, callback=None,
              stop_when_converged: bool = False, rhat_threshold: float = 1.05, min_ess: float = 50.0,
              watch_frames: int = 16, report=None) -> SmoothResult:
    """Run (or resume at ``start`` with the ``trace`` so far) to ``n_iters`` iterations in chunks.

    After every chunk the convergence of the positions of ``watch_frames`` evenly spread frames (every keypoint
    and axis) is diagnosed on the second half of the iterations so far (split R̂ and ESS,
    :mod:`mck.gimbal.convergence`; ``watch_frames=0`` switches it off) and passed to ``report(iteration,
    summary)``. With ``stop_when_converged`` (off by default: the lab's fixed schedule), the first chunk boundary
    before ``options.burn_in`` where every R̂ ≤ ``rhat_threshold`` and every ESS ≥ ``min_ess`` ends the burn-in
    there; the chain then keeps the same number of post-burn-in iterations as the fixed schedule
    (``n_iters − burn_in``) and stops. Draws of a resumed chain start at the resume point.
    """
    from mck.gimbal.convergence import converged, diagnose, watch_indices

    traces = [np.asarray(trace if trace is not None else np.zeros(0))[:start]]
    watch = watch_indices(*state.positions.shape[:2], count=watch_frames) if watch_frames else None
    draws, diagnostics = [], []
    converged_at = int(state.converged_at)
    target = n_iters
    if converged_at < min(options.burn_in, n_iters):
        target = min(n_iters, converged_at + n_iters - options.burn_in)
    iteration = start
    while iteration < target:
        stop = min(iteration + chunk_iters, target)
        if watch is None:
            state, chunk = run_iterations(model, data, state, iteration, stop, seed=seed, options=options,
                                          length=chunk_iters)
        else:
            state, chunk, watched = run_iterations(model, data, state, iteration, stop, seed=seed, options=options,
                                                   length=chunk_iters, watch=watch)
            draws.append(watched.astype(np.float32))
        traces.append(chunk)
        iteration = stop
        if draws and sum(len(d) for d in draws) >= 32:
            summary = {"iteration": iteration, **diagnose(np.concatenate(draws))}
            diagnostics.append(summary)
            if report is not None:
                report(iteration, summary)
            if (stop_when_converged and converged_at >= options.burn_in and iteration < options.burn_in
                    and converged(summary, rhat_threshold, min_ess)):
                converged_at = iteration
                state = state._replace(converged_at=jnp.asarray(iteration, jnp.int32))
                target = min(n_iters, iteration + n_iters - options.burn_in)
        if callback is not None:
            callback(state, iteration, np.concatenate(traces))
    kept = int(state.samples_kept)
    if kept == 0:
        raise ValueError(f"no samples kept: burn_in={options.burn_in} ≥ n_iters={n_iters} (or thin too large)")
    positions = np.asarray(state.positions_sum) / kept
    first_pass = next((d["iteration"] for d in diagnostics if converged(d, rhat_threshold, min_ess)), None)
    return SmoothResult(positions=positions, log_likelihood=np.concatenate(traces),
                        acceptance_rate=float(state.accepted) / max(iteration, 1), samples=kept, state=state,
                        iterations=iteration, diagnostics=diagnostics,
                        converged_at=converged_at if converged_at < NOT_CONVERGED else first_pass)
