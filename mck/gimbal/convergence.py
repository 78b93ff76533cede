"""Convergence diagnostics of a single chain on a subsample of its positions: split R-hat and effective sample
size (Gelman et al., BDA3 §11.4–11.5), with the chain's window cut into ``splits`` segments treated as chains.

``draws`` (n, m): n successive iterations of m watched scalar quantities (coordinates of a few frames'
keypoints). Pure numpy; cheap (m ≈ 10²–10³, n ≤ a few thousand).
"""

from __future__ import annotations

import numpy as np


def _chains(draws: np.ndarray, splits: int) -> np.ndarray:
    x = np.asarray(draws, dtype=np.float64)
    n = x.shape[0] // splits
    if n < 4:
        raise ValueError(f"{x.shape[0]} draws are too few for {splits} splits")
    return x[x.shape[0] - n * splits:].reshape(splits, n, *x.shape[1:])   # the most recent n·splits draws


def split_rhat(draws, splits: int = 4) -> np.ndarray:
    """Potential scale reduction R̂ per quantity (m,); 1 for quantities that never move."""
    chains = _chains(draws, splits)
    n = chains.shape[1]
    within = chains.var(axis=1, ddof=1).mean(axis=0)
    between = n * chains.mean(axis=1).var(axis=0, ddof=1)
    var_plus = (n - 1) / n * within + between / n
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(var_plus / within)
    return np.where(within > 0, rhat, 1.0)


def effective_sample_size(draws, splits: int = 4) -> np.ndarray:
    """Effective sample size per quantity (m,) of the split chains (Geyer's initial positive sequence on the
    combined autocorrelation); the number of draws for quantities that never move."""
    chains = _chains(draws, splits)
    M, n = chains.shape[:2]
    centred = chains - chains.mean(axis=1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n     # (M, n, m)
    within = chains.var(axis=1, ddof=1).mean(axis=0)
    between = n * chains.mean(axis=1).var(axis=0, ddof=1)
    var_plus = (n - 1) / n * within + between / n
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (within - acov.mean(axis=0)) / var_plus                          # (n, m)
    rho = np.nan_to_num(rho)
    # Geyer: sum pairs ρ_{2t} + ρ_{2t+1} while positive.
    pairs = rho[: (n // 2) * 2].reshape(n // 2, 2, -1).sum(axis=1)                    # (n/2, m)
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)
    tau = -1.0 + 2.0 * np.sum(np.where(positive, pairs, 0.0), axis=0)
    ess = M * n / np.maximum(tau, 1.0 / np.log10(max(M * n, 10)))
    return np.where(within > 0, ess, float(M * n))


def diagnose(draws, splits: int = 4) -> dict:
    """Summary of the second half of ``draws`` (the first is warm-up): max and median split R̂, min and median
    ESS, the number of draws used."""
    x = np.asarray(draws)
    window = x[x.shape[0] // 2:]
    rhat = split_rhat(window, splits)
    ess = effective_sample_size(window, splits)
    return {"rhat_max": float(np.max(rhat)), "rhat_median": float(np.median(rhat)),
            "ess_min": float(np.min(ess)), "ess_median": float(np.median(ess)), "draws": int(window.shape[0])}


def converged(summary: dict, rhat_threshold: float = 1.05, min_ess: float = 50.0) -> bool:
    """Whether a :func:`diagnose` summary passes: every watched quantity's R̂ ≤ ``rhat_threshold`` and ESS ≥
    ``min_ess``."""
    return summary["rhat_max"] <= rhat_threshold and summary["ess_min"] >= min_ess


def watch_indices(frames: int, keypoints: int, count: int = 16) -> np.ndarray:
    """Flat indices into positions.reshape(−1) of every coordinate of ``count`` evenly spread frames
    (m = 3·K·count)."""
    picked = np.unique(np.linspace(0, frames - 1, min(count, frames)).round().astype(np.int64))
    return (picked[:, None] * keypoints * 3 + np.arange(keypoints * 3)[None]).reshape(-1)
