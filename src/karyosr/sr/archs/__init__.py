"""Super-resolution network architectures (BasicSR style, one file each), grayscale in/out.

Registry and helpers:

* ``ARCHS``: name -> class. ``build_sr(name, scale, **kwargs)`` builds one.
* SR contract: input ``(N, 1, h, w)`` in [0, 1] -> ``(N, 1, h*scale, w*scale)``, not clamped.
  Exceptions: ``srfbn`` returns a list of T step outputs (use :func:`final_output`), and
  ``unet_sharpen`` (``input_upsampled = True``) maps an already upsampled image to the same size.
* ``describe(model)``: the architecture's name and, for a variant, what differs from the
  published network (logged by train_sr and stored with the model).
* ``load_weights(model, path)``: safe loading (safetensors, or torch files with ``weights_only=True``) of plain or wrapped
  (``params_ema`` / ``params`` / ``state_dict``) state dicts; 3-channel RRDBNet (ESRGAN /
  Real-ESRGAN x4) checkpoints are reduced to 1 channel automatically.

Options shared by every architecture:

* ``input_shift``: a grey value subtracted from the input before the first convolution (EDSR's
  MeanShift with one value); 0 keeps the published input, 0.5 centres [0, 1] images; in an SR
  model's config ``auto`` takes the training images' mean (resolved by train_sr). These crops
  are dark chromosomes on white, so the mean input is ~0.85 and every first-layer feature
  carries a large constant that, without a normalisation layer, swamps residual branches at
  their small initial scale. Measured on 48 px G-band x4 crops (1 CPU thread): RRDBNet (bicubic
  variant) gained 1.6 dB over bicubic in 300 steps with the raw input and 3.2 dB with the input
  shifted by 0.5; a BatchNorm-free SRResNet 0.6 vs 2.3 dB in 200 steps; in SRCNN the second
  layer's ReLUs all died within 50 steps unless the input was centred (its residual then stays
  at zero). Every architecture defaults to 0 (the published input); the recipes set `auto`.
"""

from __future__ import annotations

import logging

from torch import nn

from karyosr.model_file import read_state_dict
from karyosr.sr.archs.discriminator import VGGStyleDiscriminator
from karyosr.sr.archs.feature_extractor import VGG19_LAYERS, SmallFeatureCNN, VGG19Features
from karyosr.sr.archs.msrresnet import MSRResNet
from karyosr.sr.archs.rrdbnet import RRDBNet, adapt_rgb_state_dict, rename_legacy_esrgan_keys
from karyosr.sr.archs.srcnn import SRCNN
from karyosr.sr.archs.srfbn import SRFBN, StepAttention, srfbn_loss
from karyosr.sr.archs.srresnet import SRResNet
from karyosr.sr.archs.unet_sharpen import UNetSharpen
from karyosr.weights import apply_state_dict

log = logging.getLogger(__name__)

ARCHS: dict[str, type[nn.Module]] = {
    "srcnn": SRCNN,
    "srresnet": SRResNet,
    "rrdbnet": RRDBNet,
    "srfbn": SRFBN,
    "unet_sharpen": UNetSharpen,
}

__all__ = [
    "ARCHS",
    "MSRResNet",
    "RRDBNet",
    "SRCNN",
    "SRFBN",
    "SRResNet",
    "SmallFeatureCNN",
    "StepAttention",
    "UNetSharpen",
    "VGG19Features",
    "VGG19_LAYERS",
    "VGGStyleDiscriminator",
    "adapt_rgb_state_dict",
    "build_sr",
    "describe",
    "final_output",
    "fit_published_state",
    "load_weights",
    "rename_legacy_esrgan_keys",
    "srfbn_loss",
]


def build_sr(name: str, scale: int, **kwargs) -> nn.Module:
    """Build the SR network registered as ``name`` for upsampling factor ``scale``.

    ``kwargs`` go to the class (e.g. ``num_block=2`` for rrdbnet). ``unet_sharpen`` takes no scale
    (same size in and out); any positive ``scale`` is accepted and stored as ``model.scale``, the
    factor of the bicubic upsampling the caller applies before it. Raises ValueError for an unknown
    name (listing the known ones) or an unsupported scale (listing the supported ones).
    """
    if name not in ARCHS:
        raise ValueError(f"unknown SR architecture {name!r}; known architectures: {', '.join(sorted(ARCHS))}")
    cls = ARCHS[name]
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise ValueError(f"{name}: scale must be an int, got {scale!r}")
    if kwargs.get("input_shift") == "auto":
        raise ValueError(f"{name}: input_shift 'auto' is resolved from the training images by train_sr "
                         "(karyosr.sr.train.resolve_options); pass a number here")
    if cls is UNetSharpen:
        if scale < 1:
            raise ValueError(f"{name}: scale must be a positive int, got {scale}")
        model = cls(**kwargs)
        model.scale = scale
        return model
    if scale not in cls.SCALES:
        raise ValueError(f"{name}: unsupported scale {scale}; supported scales: {', '.join(map(str, cls.SCALES))}")
    return cls(scale, **kwargs)


def describe(model: nn.Module) -> str:
    """What ``model`` is: the published network's name, or the variant and how it differs.

    >>> describe(build_sr("srcnn", 4, input_shift=0.5))
    'SRCNN layers, VDSR-style variant (bicubic residual, same padding; input shifted by 0.5)'
    """
    shift = getattr(model, "input_shift", 0.0)
    changes = []
    if isinstance(model, SRCNN):
        name = "SRCNN layers, VDSR-style variant" if model.residual else "SRCNN mapping"
        changes = ["bicubic residual, same padding"] if model.residual else ["same padding"]
        convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
        channels, kernels = [c.out_channels for c in convs[:2]], [c.kernel_size[0] for c in convs]
        if (channels, kernels) != ([64, 32], [9, 5, 5]):
            # the super-network's CPU-sized layers (benchmarks/results/supernet_profile.md)
            name = name.replace("variant", "narrow variant") if channels[0] < 64 else name
            changes.append(f"{channels[0]}/{channels[1]} channels, {'-'.join(map(str, kernels))} kernels")
    elif isinstance(model, SRResNet):
        if not model.batch_norm:
            name = "SRResNet, MSRResNet-style variant"
            changes.append("no BatchNorm")
        else:
            name = "SRResNet" + (" variant" if model.bicubic_residual else "")
        if model.bicubic_residual:
            changes.append("bicubic residual")
    elif isinstance(model, RRDBNet):
        name = "RRDBNet (ESRGAN generator)" + (", variant" if model.bicubic_residual else "")
        if model.bicubic_residual:
            changes.append("bicubic residual")
    elif isinstance(model, SRFBN):
        name = "SRFBN"
    elif isinstance(model, UNetSharpen):
        name = "U-Net sharpening the bicubic image (residual)"
    else:
        return type(model).__name__
    if shift:
        changes.append(f"input shifted by {shift:g}")
    if len(changes) > 1 and changes[0].endswith("padding"):
        return f"{name} ({changes[0]}; {', '.join(changes[1:])})"
    return f"{name} ({', '.join(changes)})" if changes else name


def final_output(output):
    """The prediction of a model's forward output: the last step for SRFBN's list, else itself."""
    return output[-1] if isinstance(output, (list, tuple)) else output


def load_weights(model: nn.Module, path, strict: bool = True) -> nn.Module:
    """Load a state dict from ``path`` into ``model`` and return the model.

    * Reads a safetensors file (e.g. a trained ``model.safetensors``) as tensors, anything else with
      ``torch.load(path, map_location="cpu", weights_only=True)``; a file carrying pickled Python
      objects is refused with a ValueError naming the file.
    * Unwraps ``{"params_ema": ...}`` (preferred) / ``{"params": ...}`` / ``{"state_dict": ...}``
      and a ``module.`` prefix.
    * For a 1-channel :class:`RRDBNet` or :class:`MSRResNet`, a 3-channel checkpoint is reduced
      with :func:`adapt_rgb_state_dict` (conv_first summed over RGB, conv_last averaged); names
      from the original ESRGAN repository (``RRDB_trunk``, ``trunk_conv``, ...) are renamed first
      (:func:`fit_published_state`).
    * Key mismatches raise ValueError naming the file and a few missing / unexpected keys; with
      ``strict=False`` missing and unexpected keys are only logged (e.g. loading a public x4
      ESRGAN file into an x2 model, which has no ``conv_up2``). Shape mismatches always raise.
    """
    return apply_state_dict(model, fit_published_state(model, read_state_dict(path), path), path, strict)


def fit_published_state(model: nn.Module, state: dict, path) -> dict:
    """``state`` in the layout of ``model`` where it is a published layout of it: for an
    :class:`RRDBNet` or BasicSR's :class:`MSRResNet`, names of the original ESRGAN repository
    (and MSRResNet's ``upconv1``/``upconv2``) renamed, and a 3-channel (RGB) checkpoint reduced to
    a 1-channel model with :func:`adapt_rgb_state_dict`; other models' states pass unchanged."""
    if not isinstance(model, (RRDBNet, MSRResNet)):
        return state
    state = rename_legacy_esrgan_keys(state)
    if "conv_first.weight" in state:
        in_ch = state["conv_first.weight"].shape[1]
        if in_ch != model.conv_first.in_channels:
            if in_ch == 3 and model.conv_first.in_channels == 1:
                state = adapt_rgb_state_dict(state)
                log.info("%s: 3-channel checkpoint reduced to 1 channel", path)
            elif in_ch in (12, 48):
                raise ValueError(
                    f"{path}: conv_first takes {in_ch} channels: a Real-ESRGAN pixel-unshuffle (x2/x1) checkpoint,"
                    " which this RRDBNet does not support; use an x4 checkpoint"
                )
    return state
