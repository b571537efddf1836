"""Temperature scaling: class probabilities that mean what they say.

A network trained with label smoothing and picked for validation accuracy is not calibrated: its
top probability sits near a ceiling set by the smoothing (about 0.904 with 0.1 over 24 classes)
whether it is right or wrong, and its mistakes can be as confident as its hits. Cell flags weigh
one labelling of a cell against another by their probabilities, so they need probabilities that
are calibrated. Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML
2017) divides the logits by one number T fitted on the validation split by minimum negative
log-likelihood; it changes no prediction's rank, so accuracy is untouched.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

# T outside this range means the validation logits carry no usable scale (constant or separable).
TEMPERATURE_BOUNDS = (0.05, 20.0)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of (n, views, classes) logits: each view's softmax at ``temperature``,
    averaged over the views (test-time augmentation)."""
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature, axis=-1)).mean(axis=1)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log p of the true class, p as `probabilities` gives it."""
    p = probabilities(logits, temperature)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of least negative log-likelihood on (n, views, classes) validation logits
    and their labels, searched on log T (the likelihood is smooth and unimodal in it)."""
    if not len(labels):
        raise ValueError("temperature scaling needs validation images: the validation split is empty")
    low, high = np.log(TEMPERATURE_BOUNDS)
    best = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
                           bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(best.x))
