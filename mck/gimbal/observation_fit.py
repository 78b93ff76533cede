"""Fitting GIMBAL's observation model to a detector's reprojection errors and confidences. Pure numpy.

The model, per detection (camera c, frame t, keypoint k; ``r`` the 2D residual in px, ``q`` the confidence):

    p(r | q) = (1 − ρ(q)) N₂(r; 0, σ²_ck q^−α I) + ρ(q) N₂(r; 0, σ²_out I),   ρ(q) = sigmoid(gain · (center − q))

The lab's GIMBAL fixes ρ's center 0.5 and gain 20, σ²_out = 1e6 px² and α = 0, and sets σ²_ck to the median
squared reprojection error (docs/algorithms.md §C.7/§C.8). On the demo's detections that outlier prior badly
understates how often a mid-confidence detection is wrong, and the errors' spread falls with confidence (figures:
docs/algorithms.md, Measured figures). Here every one of those numbers is fitted, by EM on the
residuals of the robust triangulation, so the fit needs no ground truth.
"""

from __future__ import annotations

import warnings

import numpy as np

MIN_CONFIDENCE = 0.05      # confidences are clipped here before q^−α (a zero confidence is a missing view anyway)
MIN_VARIANCE = 0.25        # px²: floor for σ²_ck
MAX_EXPONENT = 4.0


def inlier_variance_scale(conf, exponent: float) -> np.ndarray:
    """q^−α with q clipped to [MIN_CONFIDENCE, 1] and NaN → 1, same shape as ``conf``."""
    q = np.clip(np.nan_to_num(np.asarray(conf, dtype=float), nan=1.0), MIN_CONFIDENCE, 1.0)
    return q ** (-float(exponent))


def fit_observation_model(errors, conf, *, num_iters: int = 200, tol: float = 1e-6) -> dict:
    """EM for the model above.

    ``errors`` (C, T, K) reprojection error magnitudes px, NaN where the view was not used; ``conf`` (C, T, K)
    the detector's confidences. Returns ``inlier_variance`` (C, K) px² (σ²_ck: the variance at confidence 1),
    ``confidence_exponent`` α, ``outlier_variance`` px², ``outlier_center``, ``outlier_gain``, ``outlier_fraction``
    (the mean posterior outlier probability) and ``iterations``. Raises ValueError with fewer than 10 usable
    detections.
    """
    r2 = np.asarray(errors, dtype=float) ** 2
    q = np.asarray(conf, dtype=float)
    if r2.shape != q.shape or r2.ndim != 3:
        raise ValueError(f"errors and conf must both be (cameras, frames, keypoints); got {r2.shape} and {q.shape}")
    ok = np.isfinite(r2) & np.isfinite(q)
    if ok.sum() < 10:
        raise ValueError(f"only {int(ok.sum())} detections have a reprojection error; the observation model "
                         "needs more triangulated frames")
    r2 = np.where(ok, r2, 0.0)
    q = np.clip(np.where(ok, q, 1.0), MIN_CONFIDENCE, 1.0)
    log_q = np.log(q)
    counts = ok.sum(axis=1)                                                   # (C, K)

    # Start: σ²_ck from the median (a 2D Gaussian's |r| has median σ √(2 ln 2)), one in ten detections an outlier
    # with 5× the inlier spread, no confidence dependence.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                       # (c, k) never seen: NaN, capped below
        median_r2 = np.nanmedian(np.where(ok, r2, np.nan), axis=1)
    inlier = np.maximum(np.nan_to_num(median_r2 / (2 * np.log(2)), nan=100.0), MIN_VARIANCE)
    outlier = 25.0 * float(np.median(inlier))
    intercept, slope, alpha = float(np.log(1 / 9)), 0.0, 0.0
    previous = None
    for iteration in range(1, num_iters + 1):
        # E-step: posterior outlier probability w of every usable detection.
        var_in = inlier[:, None, :] * q ** (-alpha)
        log_in = -np.log(var_in) - r2 / (2 * var_in)
        log_out = -np.log(outlier) - r2 / (2 * outlier)
        w = np.where(ok, _sigmoid(intercept + slope * q + log_out - log_in), 0.0)
        w_in = np.where(ok, 1.0 - w, 0.0)
        # M-step: α by bisection on the (concave) profile likelihood, then σ²_ck, σ²_out in closed form, ρ(q) by
        # Newton steps of a logistic regression on the soft labels w.
        alpha = _fit_exponent(w_in, r2, log_q)
        inlier = _inlier_variance(w_in, r2, q ** alpha)
        outlier = float(np.sum(w * r2) / (2 * max(np.sum(w), 1e-12)))
        intercept, slope = _logistic(q[ok], w[ok], intercept, slope)
        current = np.concatenate([np.log(inlier).ravel(), [np.log(outlier), alpha, intercept, slope]])
        if previous is not None and np.max(np.abs(current - previous)) < tol:
            break
        previous = current
    inlier = np.where(counts > 0, inlier, 100.0)                              # never seen: the lab's cap
    # The lab's parametrisation gain · (center − q) = intercept + slope · q; a flat ρ keeps a tiny gain so that
    # center · gain still equals the intercept.
    gain = -slope if abs(slope) >= 1e-6 else (-1e-6 if slope > 0 else 1e-6)
    return {"inlier_variance": inlier, "confidence_exponent": float(alpha), "outlier_variance": outlier,
            "outlier_center": float(intercept / gain), "outlier_gain": float(gain),
            "outlier_fraction": float(np.sum(w) / ok.sum()), "iterations": iteration}


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _inlier_variance(w_in, r2, scale):
    """σ²_ck = Σ_t w r² q^α / (2 Σ_t w), floored."""
    return np.maximum(np.sum(w_in * r2 * scale, axis=1) / (2 * np.maximum(np.sum(w_in, axis=1), 1e-12)),
                      MIN_VARIANCE)


def _fit_exponent(w_in, r2, log_q, steps: int = 40) -> float:
    """argmax over α ∈ [0, MAX_EXPONENT] of Σ w [−log(σ²_ck(α) q^−α) − r² q^α / (2σ²_ck(α))] with σ²_ck(α)
    profiled out: the derivative −Σ_ck W_ck (Σ_t w r² q^α log q) / (Σ_t w r² q^α) + Σ w log q falls with α (the
    profile is concave), so bisect it."""
    weights = np.sum(w_in, axis=1)                                            # (C, K)
    target = np.sum(w_in * log_q)

    def derivative(a):
        scaled = w_in * r2 * np.exp(a * log_q)
        total = np.maximum(np.sum(scaled, axis=1), 1e-300)
        return target - np.sum(weights * np.sum(scaled * log_q, axis=1) / total)

    lo, hi = 0.0, MAX_EXPONENT
    if derivative(lo) <= 0:
        return lo
    if derivative(hi) >= 0:
        return hi
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if derivative(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def _logistic(x, y, intercept: float, slope: float, steps: int = 5) -> tuple[float, float]:
    """Newton steps, halved until the objective rises, of logistic regression logit ρ = intercept + slope · x on soft
    labels y ∈ [0, 1] (plain Newton overshoots from a start far from the optimum)."""

    def objective(b):
        z = b[0] + b[1] * x
        return float(np.sum(y * z - np.logaddexp(0.0, z)))

    beta = np.array([intercept, slope])
    value = objective(beta)
    for _ in range(steps):
        p = _sigmoid(beta[0] + beta[1] * x)
        h = p * (1 - p)
        gradient = np.array([np.sum(y - p), np.sum((y - p) * x)])
        hessian = np.array([[np.sum(h), np.sum(h * x)], [np.sum(h * x), np.sum(h * x * x)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        for _ in range(30):
            candidate = beta + step
            candidate_value = objective(candidate)
            if candidate_value >= value:
                beta, value = candidate, candidate_value
                break
            step = step / 2
        else:
            break
    return float(beta[0]), float(beta[1])
