"""Training tasks of the SR models, one class per kind of model (as BasicSR keeps SRModel,
SRGANModel and ESRGANModel apart), each an engine task (see :mod:`karyosr.engine`):

* :class:`SRTask`: pixel loss on the prediction, plus a perceptual loss when its weight is non-zero;
* :class:`GANTask`: adds a discriminator, its optimiser and an adversarial loss ('vanilla', SRGAN:
  MSE + perceptual + 1e-3 GAN; 'ragan', ESRGAN: 0.01 L1 + perceptual + 0.005 relativistic-average
  GAN), and exports an EMA of the generator's weights;
* :class:`SRFBNTask`: SRFBN's per-step losses weighted by the learned step attention;
* :class:`SRFBNGANTask`: both.

:func:`build_task` picks the class from the model's config.
"""

from __future__ import annotations

import torch
from torch import nn

from karyosr.engine import EMA, autocast, prepare_module
from karyosr.quality import full_reference
from karyosr.sr import archs
from karyosr.sr.data import Pairs, PatchSampler
from karyosr.sr.inference import predict, super_resolve, to_tensor
from karyosr.sr.losses import PIXEL_LOSSES, PerceptualLoss, discriminator_loss, generator_adversarial_loss


class SRTask:
    """An SR network trained on its prediction's pixel loss, plus the perceptual loss when
    ``perceptual_weight`` is non-zero."""

    def __init__(self, cfg: dict, model: nn.Module, train: Pairs, val: Pairs, device: torch.device,
                 perceptual: PerceptualLoss | None):
        self.cfg, self.device, self.scale = cfg, device, train.scale
        self.model = prepare_module(model, device)
        # Compiled for the training steps only; checkpoints keep the plain module's key names.
        self.forward_model = torch.compile(self.model) if cfg["compile"] else self.model
        self.sampler = PatchSampler(train, cfg["patch_size"], cfg["batch_size"])
        self.val, self.peak = val, train.peak
        self.pixel_loss = PIXEL_LOSSES[cfg["pixel_loss"]]
        self.perceptual = perceptual.to(device) if perceptual and cfg["perceptual_weight"] > 0 else None
        self.optimizer = torch.optim.Adam(self.trained_parameters(), lr=cfg["lr"], betas=(0.9, 0.99))

    def trained_parameters(self) -> list[nn.Parameter]:
        """What the generator's optimiser trains."""
        return list(self.model.parameters())

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.sampler.sample()
        return to_tensor(lr, self.peak, self.device), to_tensor(hr, self.peak, self.device)

    def reconstruct(self, lr: torch.Tensor, hr: torch.Tensor, losses: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction for an LR batch and its pixel loss."""
        output = super_resolve(self.forward_model, lr, self.scale)
        return output, self.pixel_loss(output, hr)

    def generator_loss(self, lr: torch.Tensor, hr: torch.Tensor, losses: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction and the generator's weighted total loss; each term's value goes into ``losses``."""
        output, pixel = self.reconstruct(lr, hr, losses)
        total = self.cfg["pixel_weight"] * pixel
        losses["pixel"] = pixel.item()
        if self.perceptual is not None:
            perceptual = self.perceptual(output, hr)
            total = total + self.cfg["perceptual_weight"] * perceptual
            losses["perceptual"] = perceptual.item()
        return output, total

    def generator_step(self, lr: torch.Tensor, hr: torch.Tensor, losses: dict) -> torch.Tensor:
        """One optimiser step of the SR network; returns its prediction."""
        with autocast(self.device, self.cfg["bf16"]):
            output, total = self.generator_loss(lr, hr, losses)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg["grad_clip"]:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["grad_clip"])
        self.optimizer.step()
        losses["total"] = total.item()
        return output

    def train_step(self, step: int) -> dict[str, float]:
        losses = {}
        self.generator_step(*self._batch(), losses)
        return losses

    def predictor(self) -> nn.Module:
        """The network that is validated and exported."""
        return self.model

    def validate(self) -> dict[str, float]:
        sr = predict(self.predictor(), self.val.lr, self.scale, self.peak, self.device, self.cfg["infer_batch_size"],
                     self.cfg["bf16"])
        return {
            "val_psnr": float(full_reference.psnr(self.val.hr, sr, self.peak).mean()),
            "val_ssim": float(full_reference.ssim(self.val.hr, sr, self.peak).mean()),
        }

    def export(self) -> dict:
        return {"state_dict": {k: v.detach().cpu() for k, v in self.predictor().state_dict().items()}}


class GANTask(SRTask):
    """An SR network trained against a discriminator (``gan.type`` 'vanilla' or 'ragan'); an EMA
    of its weights is validated and exported."""

    def __init__(self, cfg: dict, model: nn.Module, train: Pairs, val: Pairs, device: torch.device,
                 perceptual: PerceptualLoss | None):
        super().__init__(cfg, model, train, val, device, perceptual)
        self.gan = cfg["gan"]
        self.discriminator = prepare_module(archs.VGGStyleDiscriminator(**self.gan["discriminator"]), device)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.gan["lr"], betas=(0.9, 0.99))
        self.ema = EMA(self.model, cfg["ema_decay"])

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "discriminator": self.discriminator, "ema": self.ema.shadow}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "discriminator": self.d_optimizer}

    def generator_loss(self, lr: torch.Tensor, hr: torch.Tensor, losses: dict) -> tuple[torch.Tensor, torch.Tensor]:
        output, total = super().generator_loss(lr, hr, losses)
        # Frozen while the generator's step runs, so its backward pass leaves D's gradients alone.
        self.discriminator.requires_grad_(False)
        fake_logits = self.discriminator(output)
        real_logits = self.discriminator(hr) if self.gan["type"] == "ragan" else None
        adversarial = generator_adversarial_loss(self.gan["type"], fake_logits, real_logits)
        losses["adversarial"] = adversarial.item()
        return output, total + self.gan["weight"] * adversarial

    def discriminator_step(self, output: torch.Tensor, hr: torch.Tensor, losses: dict) -> None:
        self.discriminator.requires_grad_(True)
        with autocast(self.device, self.cfg["bf16"]):
            d_loss = discriminator_loss(self.gan["type"], self.discriminator(hr), self.discriminator(output.detach()))
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        losses["discriminator"] = d_loss.item()

    def train_step(self, step: int) -> dict[str, float]:
        lr, hr = self._batch()
        losses = {}
        output = self.generator_step(lr, hr, losses)
        self.discriminator_step(output, hr, losses)
        self.ema.update(self.model)
        return losses

    def predictor(self) -> nn.Module:
        return self.ema.shadow


class SRFBNTask(SRTask):
    """SRFBN trained on the losses of all its steps, weighted by a learned step attention that
    the generator's optimiser trains with the network."""

    def __init__(self, cfg: dict, model: nn.Module, train: Pairs, val: Pairs, device: torch.device,
                 perceptual: PerceptualLoss | None):
        # Built before SRTask's optimiser, which takes its parameters.
        self.attention = archs.StepAttention(model.num_step).to(device)
        super().__init__(cfg, model, train, val, device, perceptual)

    def trained_parameters(self) -> list[nn.Parameter]:
        return super().trained_parameters() + list(self.attention.parameters())

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "attention": self.attention}

    def reconstruct(self, lr: torch.Tensor, hr: torch.Tensor, losses: dict) -> tuple[torch.Tensor, torch.Tensor]:
        steps = self.forward_model(lr)
        pixel, weights = archs.srfbn_loss(steps, hr, self.attention, self.pixel_loss)
        losses["step_weight_last"] = weights[-1].item()
        return steps[-1], pixel


class SRFBNGANTask(GANTask, SRFBNTask):
    """SRFBN with its step attention, trained against a discriminator."""


def build_task(cfg: dict, model: nn.Module, train: Pairs, val: Pairs, device: torch.device,
               perceptual: PerceptualLoss | None) -> SRTask:
    """The training task of an ``sr.models`` entry: a GAN task when it has ``gan``, SRFBN's
    weighted step losses when it is an SRFBN with ``step_attention`` (without, SRFBN trains on its
    last step's output like any network)."""
    step_attention = cfg["arch"] == "srfbn" and cfg["step_attention"]
    if cfg.get("gan"):
        kind = SRFBNGANTask if step_attention else GANTask
    else:
        kind = SRFBNTask if step_attention else SRTask
    return kind(cfg, model, train, val, device, perceptual)
