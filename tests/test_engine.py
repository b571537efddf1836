"""The shared training engine: resume, best-epoch selection, early stopping, EMA, device."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from karyosr import engine


class LineTask:
    """Fit y = 3x with one weight; validation reports minus the error (higher is better)."""

    def __init__(self, stop_after: int | None = None):
        self.model = nn.Linear(1, 1, bias=False)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.stop_after, self.steps_seen = stop_after, []

    def modules(self):
        return {"model": self.model}

    def optimizers(self):
        return {"model": self.optimizer}

    def train_step(self, step):
        if self.stop_after is not None and step >= self.stop_after:
            raise KeyboardInterrupt  # stands in for the job being killed
        self.steps_seen.append(step)
        x = torch.rand(8, 1)
        loss = ((self.model(x) - 3 * x) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def validate(self):
        return {"val_score": -abs(self.model.weight.item() - 3.0)}

    def export(self):
        return {"weight": self.model.weight.detach().clone()}


class Stalling(LineTask):
    def validate(self):
        return {"val_score": 0.0}  # best at epoch 1, never better after


def settings(tmp_path: Path, **kw) -> engine.FitSettings:
    defaults = dict(epochs=4, steps_per_epoch=10, checkpoint_dir=tmp_path / "ck", config_slice={"lr": 0.1},
                    checkpoint_every=5, select_by="val_score", progress=False)
    return engine.FitSettings(**{**defaults, **kw})


def test_interrupted_run_resumes_from_the_saved_step_and_matches_an_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    reference = engine.fit(LineTask(), settings(tmp_path / "a"))

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(LineTask(stop_after=23), settings(tmp_path / "b"))
    saved = torch.load(tmp_path / "b/ck/last.pt", weights_only=True)
    assert saved["step"] == 20  # the last epoch end / every-5-steps checkpoint before step 23

    torch.manual_seed(123)  # the checkpoint's RNG state, not this seed, drives the rest
    task = LineTask()
    resumed = engine.fit(task, settings(tmp_path / "b"))
    assert resumed.resumed_from_step == 20 and task.steps_seen[0] == 20
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]
    torch.testing.assert_close(resumed.export["weight"], reference.export["weight"])


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    torch.manual_seed(0)
    engine.fit(LineTask(), settings(tmp_path, epochs=1))
    result = engine.fit(LineTask(), settings(tmp_path, epochs=1, config_slice={"lr": 0.2}))
    assert result.resumed_from_step == 0


def test_best_epoch_is_exported_and_early_stopping(tmp_path):
    result = engine.fit(Stalling(), settings(tmp_path, epochs=10, patience=2))
    assert result.best_epoch == 1 and list(result.history["epoch"]) == [1, 2, 3]


def test_learning_rate_decays_on_plateau_and_resumes_with_the_decayed_rate(tmp_path):
    plateau = dict(epochs=6, lr_decay=0.5, lr_patience=2)
    result = engine.fit(Stalling(), settings(tmp_path / "a", **plateau))
    # the rate used in each epoch: halved after the 2nd and the 4th epoch without improvement
    assert list(result.history["lr"]) == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]

    with pytest.raises(KeyboardInterrupt):
        engine.fit(Stalling(stop_after=33), settings(tmp_path / "b", **plateau))
    resumed = engine.fit(Stalling(), settings(tmp_path / "b", **plateau))
    assert resumed.resumed_from_step == 30
    assert list(resumed.history["lr"]) == list(result.history["lr"])

    constant = engine.fit(Stalling(), settings(tmp_path / "c", epochs=6))
    assert set(constant.history["lr"]) == {0.1}


def test_cosine_schedule_anneals_to_zero_and_resumes_on_the_same_curve(tmp_path):
    cosine = dict(epochs=4, schedule="cosine")
    result = engine.fit(LineTask(), settings(tmp_path / "a", **cosine))
    # the rate of each epoch's last step: 0.1 * (1 + cos(pi * (10 e - 1) / 40)) / 2
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * (10 * e - 1) / 40)) for e in range(1, 5)]
    assert result.history["lr"].tolist() == pytest.approx(expected)

    with pytest.raises(KeyboardInterrupt):
        engine.fit(LineTask(stop_after=23), settings(tmp_path / "b", **cosine))
    resumed = engine.fit(LineTask(), settings(tmp_path / "b", **cosine))
    assert resumed.resumed_from_step == 20
    assert resumed.history["lr"].tolist() == pytest.approx(expected)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_warm_up_rises_to_the_configured_rate_then_anneals(schedule):
    total, warmup = 100, 20
    factors = [engine.schedule_factor(schedule, step, total, warmup) for step in range(total)]
    rising, falling = factors[: warmup + 1], factors[warmup:]
    assert all(a < b for a, b in zip(rising, rising[1:]))
    assert all(a > b for a, b in zip(falling, falling[1:]))
    assert max(factors) == pytest.approx(1.0)
    if schedule == "onecycle":
        # Smith's one-cycle (torch OneCycleLR): starts at lr/25, ends near lr/1e4
        assert factors[0] == pytest.approx(1 / 25)
        assert factors[-1] == pytest.approx(1e-4, abs=5e-4)
    else:
        assert factors[0] == pytest.approx(1 / (warmup + 1))
        assert factors[-1] < 1e-3


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="'steps'.*constant, cosine, onecycle"):
        engine.schedule_factor("steps", 0, 10)


def test_ema_tracks_the_weights():
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 0.0)
    ema = engine.EMA(model, decay=0.5)
    nn.init.constant_(model.weight, 1.0)
    ema.update(model)
    assert ema.shadow.weight.item() == pytest.approx(0.5)


def test_pick_device_and_config_hash():
    assert engine.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert engine.pick_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            engine.pick_device("cuda")
    assert engine.config_hash({"a": 1, "b": 2}) == engine.config_hash({"b": 2, "a": 1})
    assert engine.config_hash({"a": 1}) != engine.config_hash({"a": 2})
