"""Feature networks for perceptual losses.

* :class:`VGG19Features`: VGG19's convolutional part in torchvision's module layout, loaded from
  a torchvision-format state dict (e.g. the ImageNet ``vgg19-dcbb9e9d.pth``), truncated at a
  named layer. Frozen.
* :class:`SmallFeatureCNN`: a tiny CNN whose last feature map is the workflow's default
  perceptual feature ("pipeline_features"); the workflow trains it on HR images itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from karyosr.weights import load_checkpoint

# torchvision's VGG19 ("E") configuration: numbers are conv widths, "M" max-pools
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for v in VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYERS = {name: i for i, name in enumerate(_vgg19_layer_names())}
"""Layer name -> index in ``features``: conv1_1 = 0, relu1_1 = 1, ..., conv5_4 = 34, relu5_4 = 35, pool5 = 36."""


def _vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return nn.Sequential(*layers)


class VGG19Features(nn.Module):
    """Frozen VGG19 features up to and including ``layer``.

    Args:
        weights_path: torchvision-format VGG19 state dict (``features.<i>.weight/bias``; keys
            ``classifier.*`` are ignored; every ``features`` tensor must be present and no other
            key may appear, else ValueError naming the file). Loaded with
            ``torch.load(path, map_location="cpu", weights_only=True)``; ``{"state_dict": ...}``
            wrappers are accepted.
        layer: ``convB_I`` is the conv output BEFORE its ReLU (ESRGAN's choice, the default
            ``conv5_4``); ``reluB_I`` is after the ReLU; ``poolB`` after the block's max-pool.
            See ``VGG19_LAYERS``.
        use_input_norm: normalise with the ImageNet mean/std after repeating the gray channel.

    Input ``(N, 1, H, W)`` in [0, 1] (3-channel input is used as is); output the feature map,
    e.g. ``(N, 512, H/16, W/16)`` at conv5_4. Parameters are frozen (``requires_grad=False``);
    gradients still flow to the input.
    """

    def __init__(self, weights_path, layer: str = "conv5_4", use_input_norm: bool = True):
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"VGG19Features: unknown layer {layer!r}; known: {', '.join(VGG19_LAYERS)}")
        self.layer = layer
        self.use_input_norm = use_input_norm
        features = _vgg19_features()
        state = load_checkpoint(weights_path)
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ValueError(f"{weights_path}: expected a VGG19 state dict, got {type(state).__name__}")
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        other = sorted(k for k in state if not k.startswith(("features.", "classifier.")))
        expected = set(features.state_dict())
        missing, unexpected = sorted(expected - set(feats)), sorted(set(feats) - expected)
        if missing or unexpected or other:
            raise ValueError(
                f"{weights_path}: not a torchvision VGG19 state dict; missing features keys "
                f"{['features.' + k for k in missing[:5]]}, unexpected {(['features.' + k for k in unexpected] + other)[:5]}"
            )
        try:
            features.load_state_dict(feats, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{weights_path}: VGG19 weights do not fit: {exc}") from exc
        self.features = features[: VGG19_LAYERS[layer] + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        return self.features(x)


class SmallFeatureCNN(nn.Module):
    """Tiny CNN for "pipeline_features": one stage per width in ``channels``, each
    conv3-ReLU-conv3-ReLU, with a 2x2 max-pool between stages (none after the last).

    ``features(x)`` returns the last stage's map ``(N, channels[-1], H/2**(k-1), W/2**(k-1))``;
    ``feature_maps(x)`` returns every stage's map. With ``num_classes`` set, a head (global
    average pooling + linear) makes ``forward`` return class logits, for training the features
    as a classifier; without it ``forward`` equals ``features``.
    """

    def __init__(self, channels=(16, 32, 64), num_in_ch: int = 1, num_classes: int | None = None):
        super().__init__()
        if not channels:
            raise ValueError("SmallFeatureCNN: channels must not be empty")
        self.stages = nn.ModuleList()
        cin = num_in_ch
        for c in channels:
            self.stages.append(
                nn.Sequential(
                    nn.Conv2d(cin, c, 3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c, c, 3, padding=1),
                    nn.ReLU(inplace=True),
                )
            )
            cin = c
        self.head = nn.Linear(cin, num_classes) if num_classes else None

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, stage in enumerate(self.stages):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = stage(x)
            maps.append(x)
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.features(x)
        return feat if self.head is None else self.head(feat.mean((2, 3)))
