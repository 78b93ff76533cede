"""Fitting GIMBAL's parameters from 3D poses (docs/algorithms.md §C.8): a mixture of vMF products by EM for the pose
states, bone lengths, observation inlier variances. Writes the lab's dict layout.

Deliberately unlike the lab's notebook (docs/algorithms.md §E quirk 9): bone lengths are measured on node-ordered poses, so
every node gets the length of its own bone (the notebook used use-bodypart order for the poses but node order for
the parents, which gives most paw nodes unrelated distances).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from mck.gimbal.distributions import sample_vmf, vmf_log_normalizer
from mck.gimbal.observation_fit import fit_observation_model

MAX_CONCENTRATION = 100.0


def canonical_poses(positions, indices_egocentric=(0, 2)) -> np.ndarray:
    """Centre each frame (N, K, 3) on its keypoint mean and rotate about z so that keypoint
    ``indices_egocentric[1]`` − ``indices_egocentric[0]`` points along +x (the canonical frame of μ)."""
    x = np.asarray(positions, dtype=float)
    x = x - x.mean(axis=1, keepdims=True)
    base, tip = indices_egocentric
    d = x[:, tip] - x[:, base]
    angle = np.arctan2(d[:, 1], d[:, 0])
    c, s = np.cos(-angle)[:, None], np.sin(-angle)[:, None]
    return np.stack([c * x[..., 0] - s * x[..., 1], s * x[..., 0] + c * x[..., 1], x[..., 2]], axis=-1)


def bone_directions(positions, parents) -> np.ndarray:
    """u_k = (x_k − x_par(k)) / ‖·‖ for (N, K, 3) node-ordered poses; root row 0."""
    x = np.asarray(positions, dtype=float)
    offsets = x - x[:, np.asarray(parents)]
    u = offsets / (np.linalg.norm(offsets, axis=-1, keepdims=True) + 1e-16)
    u[:, 0] = 0.0
    return u


def _kappa_hornik_grun(mean_resultant):
    """Hornik & Grün (2014) bounds-midpoint estimate of κ for vMF on S² (ν = 1/2), capped at 100."""
    nu = 0.5

    def g_inverse(rho, a, b):
        return rho / (1 - rho ** 2) * (a + jnp.sqrt(rho ** 2 * a ** 2 + (1 - rho ** 2) * b ** 2))

    r = mean_resultant
    upper = g_inverse(r, nu + 0.5, nu + 1.5)
    lower = jnp.maximum(g_inverse(r, nu, nu + 2.0), g_inverse(r, nu + 0.5, jnp.sqrt((nu + 0.5) * (nu + 1.5))))
    return jnp.minimum((upper + lower) / 2, MAX_CONCENTRATION)


@functools.partial(jax.jit, static_argnames=("num_states", "num_iters"))
def em_movmf(key, directions, num_states: int = 50, num_iters: int = 1000):
    """EM for a mixture of products of vMFs on S² (the lab's ``gimbal.fit.em_movMF``).

    ``directions`` (T, K, 3) unit vectors. Returns π (S,), μ (S, K, 3), κ (S, K) and the log-likelihood
    trace (num_iters,), recorded after each M-step.
    """
    k_kappa, k_mu = jr.split(key)
    T, K, _ = directions.shape
    dtype = directions.dtype
    mean_direction = jnp.sum(directions, axis=0)
    mean_direction = mean_direction / jnp.linalg.norm(mean_direction, axis=-1, keepdims=True)
    kappa0 = jnp.maximum(jr.normal(k_kappa, (num_states, K), dtype=dtype) + 5.0, 0.0)
    mu0 = sample_vmf(k_mu, jnp.broadcast_to(mean_direction, (num_states, K, 3)),
                     jnp.full((num_states, K), 5.0, dtype=dtype))
    log_pi0 = jnp.full(num_states, -jnp.log(num_states), dtype=dtype)

    def component_log_lik(log_pi, mu, kappa):
        return (log_pi + jnp.einsum("tkd,skd->ts", directions, kappa[..., None] * mu)
                + jnp.sum(vmf_log_normalizer(kappa), axis=-1))

    def step(carry, _):
        log_pi, mu, kappa = carry
        joint = component_log_lik(log_pi, mu, kappa)                         # (T, S)
        resp = jax.nn.softmax(joint, axis=1) + 1e-6
        resp = resp / jnp.sum(resp, axis=1, keepdims=True)
        pi = jnp.mean(resp, axis=0)
        resultant = jnp.einsum("ts,tkd->skd", resp, directions)
        norm = jnp.linalg.norm(resultant, axis=-1)
        mu = resultant / jnp.where(norm > 0, norm, 1.0)[..., None]
        mean_resultant = jnp.minimum(norm / jnp.sum(resp, axis=0)[:, None], 1 - 1e-10)
        kappa = _kappa_hornik_grun(mean_resultant)
        log_pi = jnp.log(pi)
        ll = jnp.sum(jax.scipy.special.logsumexp(component_log_lik(log_pi, mu, kappa), axis=1))
        return (log_pi, mu, kappa), ll

    (log_pi, mu, kappa), trace = jax.lax.scan(step, (log_pi0, mu0, kappa0), None, length=num_iters)
    return jnp.exp(log_pi), mu, kappa, trace


def inlier_variance_from_errors(reprojection_errors, cap: float = 100.0) -> np.ndarray:
    """``obs_inlier_variance`` (C, K) = min(median over frames of the pixel error², cap); NaN → cap.
    ``reprojection_errors`` (C, T, K) px (NaN where not detected confidently)."""
    errors = np.asarray(reprojection_errors, dtype=float)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(errors, axis=1)
    return np.where(np.isfinite(median), np.minimum(median ** 2, cap), cap)


def mean_bone_lengths(positions_3d, parents) -> tuple[np.ndarray, np.ndarray]:
    """Per bone (node k to its parent) the mean length (K,) mm over the frames where both ends are finite, and that
    number of frames (K,); NaN where none (and for the root, whose "bone" is itself: length 0)."""
    x = np.asarray(positions_3d, dtype=float)
    lengths = np.linalg.norm(x - x[:, np.asarray(parents, dtype=int)], axis=-1)      # (T, K)
    counts = np.isfinite(lengths).sum(axis=0)
    sums = np.nansum(lengths, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), counts


def fit_params(positions_3d, parents, *, reprojection_errors=None, confidences=None,
               num_cameras: int | None = None, num_states: int = 50, num_iters: int = 1000,
               indices_egocentric=(0, 2), seed: int = 1, node_names=None, camera_names=None,
               radii=None) -> dict:
    """Fit the parameter dict (docs/algorithms.md §C.8) from node-ordered 3D poses ``positions_3d`` (T, K, 3) mm.

    Frames with any NaN are dropped. ``reprojection_errors`` (C, T', K) px gives ``obs_inlier_variance``;
    without it the variance is the cap (100 px²) for ``num_cameras`` cameras. With ``confidences`` (C, T', K) as
    well, the whole observation model is fitted (:mod:`mck.gimbal.observation_fit`) and stored under the
    ``obs_model_*`` keys, which the lab's readers ignore (their ``obs_inlier_variance`` stays the lab's rule).
    ``seed`` keys the EM (the lab's PRNGKey(1)). Returns the lab's dict plus a ``log_likelihood`` trace of the EM
    and ``node_names`` / ``camera_names`` when given. ``radii`` (K,) mm: bone lengths measured elsewhere (e.g. on
    triangulated labels); its finite entries replace the mean lengths of ``positions_3d`` (``radii_std``, the
    tolerance, stays measured on ``positions_3d``).
    """
    x = np.asarray(positions_3d, dtype=float)
    parents = np.asarray(parents, dtype=int)
    complete = np.isfinite(x).all(axis=(1, 2))
    x = x[complete]
    if x.shape[0] < num_states:
        raise ValueError(f"only {x.shape[0]} complete frames (no NaN keypoint) for {num_states} pose states; "
                         "fit on more sessions or fewer states")
    radii_per_frame = np.linalg.norm(x - x[:, parents], axis=-1)            # node order: quirk 9 fixed
    lengths_mean = radii_per_frame.mean(0)
    if radii is not None:
        radii = np.asarray(radii, dtype=float)
        if radii.shape != lengths_mean.shape:
            raise ValueError(f"radii: expected shape {lengths_mean.shape}, got {radii.shape}")
        lengths_mean = np.where(np.isfinite(radii), radii, lengths_mean)
    directions = bone_directions(canonical_poses(x, indices_egocentric), parents)
    pis, mus, kappas, trace = em_movmf(jr.PRNGKey(seed), jnp.asarray(directions[:, 1:]), num_states=num_states,
                                       num_iters=num_iters)
    S = num_states
    mus = np.concatenate([np.tile([[[1.0, 0.0, 0.0]]], (S, 1, 1)), np.asarray(mus)], axis=1)
    kappas = np.concatenate([np.zeros((S, 1)), np.asarray(kappas)], axis=1)
    if reprojection_errors is not None:
        obs_var = inlier_variance_from_errors(reprojection_errors)
    else:
        if num_cameras is None:
            raise ValueError("give reprojection_errors or num_cameras")
        obs_var = np.full((num_cameras, x.shape[1]), 100.0)
    params = {
        "obs_inlier_variance": obs_var,
        "indices_egocentric": list(indices_egocentric),
        "parents": parents,
        "radii": lengths_mean,
        "radii_std": radii_per_frame.std(0),
        "kappas": kappas,
        "mus": mus,
        "pis": np.asarray(pis),
        "log_likelihood": np.asarray(trace),
    }
    if reprojection_errors is not None and confidences is not None:
        fitted = fit_observation_model(reprojection_errors, confidences)
        params.update({f"obs_model_{name}": value for name, value in fitted.items()})
    if node_names is not None:
        params["node_names"] = list(node_names)
    if camera_names is not None:
        params["camera_names"] = list(camera_names)
    return params
