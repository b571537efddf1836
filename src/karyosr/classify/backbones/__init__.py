"""Chromosome classification backbones (plain torch, one file per architecture).

Contract shared by every backbone (see :class:`~karyosr.classify.backbones._common.Backbone`):

* input ``(N, 1, H, W)`` float in [0, 1], any ``H, W >= 32`` (adaptive pooling; smaller inputs
  raise ValueError); output ``(N, num_classes)`` logits (24 = chromosomes 1-22, X, Y; no softmax);
* ``features(x) -> (N, model.num_features)`` penultimate-layer features (for t-SNE plots) and
  ``forward(x) = model.classifier(model.features(x))``;
* ``width`` (float) multiplies every channel / dense count (each at least 4) and a depth setting
  (``depth`` / ``middle_repeats`` / ``repeats``) shrinks the network; defaults = published sizes.

Registry and helpers:

* ``BACKBONES``: name -> class (``dcnn``, ``resnet18``, ``resnet50``, ``vgg19``, ``xception``,
  ``inception_resnet_v2``, and ``plain_cnn``: the project's small reference network, not a
  published one); ``build_backbone(name, num_classes=24, width=1.0, **kwargs)``.
* ``load_weights(model, path, strict=True, skip_classifier=False)``: safe weights-only loading.
"""

from __future__ import annotations

import logging

from torch import nn

from karyosr.classify.backbones._common import Backbone
from karyosr.classify.backbones.dcnn import DCNN
from karyosr.classify.backbones.inception_resnet_v2 import InceptionResNetV2
from karyosr.classify.backbones.plain_cnn import PlainCNN
from karyosr.classify.backbones.resnet import ResNet, ResNet18, ResNet50
from karyosr.classify.backbones.vgg19 import VGG19
from karyosr.classify.backbones.xception import Xception
from karyosr.model_file import read_state_dict
from karyosr.weights import apply_state_dict

log = logging.getLogger(__name__)

BACKBONES: dict[str, type[Backbone]] = {
    "dcnn": DCNN,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "vgg19": VGG19,
    "xception": Xception,
    "inception_resnet_v2": InceptionResNetV2,
    "plain_cnn": PlainCNN,
}

__all__ = [
    "BACKBONES",
    "DCNN",
    "Backbone",
    "InceptionResNetV2",
    "PlainCNN",
    "ResNet",
    "ResNet18",
    "ResNet50",
    "VGG19",
    "Xception",
    "build_backbone",
    "load_weights",
]


def build_backbone(name: str, num_classes: int = 24, width: float = 1.0, **kwargs) -> Backbone:
    """Build the backbone registered as ``name``.

    ``kwargs`` go to the class: ``depth`` (dcnn: conv layers 1-6; resnet18/50: blocks per stage;
    vgg19: convs per block), ``middle_repeats`` (xception), ``repeats`` (inception_resnet_v2),
    ``small_input`` (resnet18/50, inception_resnet_v2), ``batch_norm`` / ``pool_size`` (vgg19),
    ``dropout``, ``in_channels``. Raises ValueError for an unknown name (listing the known ones)
    and for invalid settings; an argument the class does not take raises TypeError naming it.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown classification backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}")
    cls = BACKBONES[name]
    try:
        return cls(num_classes=num_classes, width=width, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from exc


def load_weights(model: nn.Module, path, strict: bool = True, skip_classifier: bool = False) -> nn.Module:
    """Load a state dict from ``path`` into ``model`` and return the model.

    * Reads a safetensors file as tensors, anything else with
      :func:`karyosr.weights.load_checkpoint` (``torch.load(..., weights_only=True)``);
      a file pickling Python objects is refused with a ValueError naming the file, a missing file
      raises FileNotFoundError.
    * Unwraps ``{"model" | "params_ema" | "params" | "state_dict": ...}`` and a ``module.`` prefix.
    * ``skip_classifier=True`` ignores the ``classifier.*`` tensors of the file and keeps the
      model's own (fresh) output layer: fine-tuning from a model trained with another
      ``num_classes``.
    * Shape mismatches always raise ValueError naming the file and a few offending tensors; key
      mismatches raise ValueError naming the file and a few missing / unexpected keys, or with
      ``strict=False`` are logged and the matching tensors loaded.
    """
    hint = "" if skip_classifier else " (a different num_classes? use skip_classifier=True)"
    return apply_state_dict(model, read_state_dict(path), path, strict,
                            shape_hint=hint, ignore_prefix="classifier." if skip_classifier else None)
