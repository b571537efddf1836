"""Temperature scaling on constructed logits."""

from __future__ import annotations

import numpy as np
import pytest

from karyosr.classify import calibration


def overconfident(n=600, accuracy=0.8, margin=12.0, views=2, seed=0):
    """Logits of a network that is right 80 % of the time and equally sure either way."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 24, n)
    wrong = rng.random(n) > accuracy
    top = np.where(wrong, (labels + rng.integers(1, 24, n)) % 24, labels)
    logits = rng.normal(0, 1, (n, views, 24))
    logits[np.arange(n), :, top] += margin
    return logits, labels, top


def test_a_fitted_temperature_lowers_the_validation_nll_of_an_overconfident_model_and_keeps_its_ranking():
    logits, labels, top = overconfident()
    temperature = calibration.fit_temperature(logits, labels)
    assert temperature > 2  # overconfidence is undone by softening
    before = calibration.negative_log_likelihood(logits, labels)
    after = calibration.negative_log_likelihood(logits, labels, temperature)
    assert after < 0.5 * before
    # nearly the best a single temperature can do: a grid finds nothing clearly better
    grid = min(calibration.negative_log_likelihood(logits, labels, t) for t in np.geomspace(0.1, 20, 200))
    assert after <= grid + 1e-3
    probabilities = calibration.probabilities(logits, temperature)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), top)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)
    # calibrated: the mean top probability is close to the accuracy
    assert abs(probabilities.max(axis=1).mean() - (top == labels).mean()) < 0.05


def test_a_held_out_set_of_the_same_model_gains_from_the_temperature_too():
    logits, labels, _ = overconfident(seed=1)
    temperature = calibration.fit_temperature(logits, labels)
    test_logits, test_labels, _ = overconfident(seed=2)
    assert (calibration.negative_log_likelihood(test_logits, test_labels, temperature)
            < calibration.negative_log_likelihood(test_logits, test_labels))


def test_an_underconfident_model_is_sharpened():
    logits, labels, _ = overconfident(accuracy=0.99, margin=1.5)
    assert calibration.fit_temperature(logits, labels) < 1


def test_no_validation_images_is_an_error_naming_the_split():
    with pytest.raises(ValueError, match="validation split is empty"):
        calibration.fit_temperature(np.zeros((0, 1, 24)), np.zeros(0, int))
