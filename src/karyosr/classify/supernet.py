"""The network an experiment trains: a backbone, or SR layers in front of one trained end to end
from the LR images (a super-network: Super-Xception and its variants)."""

from __future__ import annotations

from torch import nn

from karyosr.classify import backbones
from karyosr.classify.input_keys import parse_input
from karyosr.labels import N_CLASSES
from karyosr.sr import archs
from karyosr.sr.inference import super_resolve


class SuperNetwork(nn.Module):
    """SR layers in front of a classifier, trained end to end from LR input (Super-Xception)."""

    def __init__(self, sr: nn.Module, backbone: nn.Module, scale: int):
        super().__init__()
        self.sr, self.backbone, self.scale = sr, backbone, scale

    def upscaled(self, x):
        # Not clamped: a clamp passes no gradient where it saturates, and SR layers pushed out of
        # [0, 1] early on would then stay there, showing the backbone a blank image.
        return super_resolve(self.sr, x, self.scale)

    def features(self, x):
        return self.backbone.features(self.upscaled(x))

    def forward(self, x):
        return self.backbone(self.upscaled(x))


def build_classifier(experiment: dict, scale: int | None) -> nn.Module:
    options = dict(experiment["backbone_options"])
    width = options.pop("width", 1.0)
    backbone = backbones.build_backbone(experiment["backbone"], num_classes=N_CLASSES, width=width, **options)
    spec = parse_input(experiment["input"])
    if spec["kind"] == "super":
        sr = archs.build_sr(spec["arch"], scale, **experiment["sr_options"])
        model = SuperNetwork(sr, backbone, scale)
    else:
        model = backbone
    if experiment.get("init_from"):
        backbones.load_weights(model, experiment["init_from"], strict=False)
    return model
