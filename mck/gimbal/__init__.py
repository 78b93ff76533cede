"""GIMBAL: skeletal-prior MCMC smoothing of multi-camera keypoints, in JAX (docs/algorithms.md §C).

Layout (jax-moseq style): :mod:`mck.gimbal.model` builds the model arrays and evaluates log-densities,
:mod:`mck.gimbal.distributions` samples vMF / von Mises, :mod:`mck.gimbal.hmm` samples pose-state sequences,
:mod:`mck.gimbal.sampler` holds one ``resample_*`` function per conditional and the sweep,
:mod:`mck.gimbal.fit` fits the parameters, :mod:`mck.gimbal.params_io` reads/writes the lab's ``gimbal_params.p``.

All arrays are in GIMBAL **node order** (parents precede children, ``parents[0] == 0`` is the root), positions in
mm in the world frame, observations in undistorted pixels. Nothing here knows the mouse: the number of cameras,
keypoints and pose states come from the arrays.

Numerics: 64-bit JAX is switched on here, once, for every JAX computation in mck. Pass ``dtype="float32"`` to
:func:`smooth` for the lab's precision (faster on GPUs).
"""

import jax

jax.config.update("jax_enable_x64", True)

from mck.gimbal.fit import em_movmf, fit_params  # noqa: E402
from mck.gimbal.params_io import load_params, save_params  # noqa: E402
from mck.gimbal.prepare import interpolate_positions, outlier_probability  # noqa: E402
from mck.gimbal.sampler import (SamplerState, SmoothResult, initialize, prepare_chain, run_chain,  # noqa: E402
                                 run_iterations, smooth)

__all__ = ["load_params", "save_params", "fit_params", "em_movmf", "smooth", "SmoothResult", "SamplerState",
           "initialize", "prepare_chain", "run_chain", "run_iterations", "outlier_probability", "interpolate_positions"]
