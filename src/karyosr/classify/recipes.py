"""What an experiment trains with when it leaves a key out: each backbone's CPU size and the recipe
keys measured for it.

The published networks at full width (11-39 M parameters) take 2-8 s per training step of 64
crops on a CPU core and buy nothing on 48-128 px chromosomes, so an experiment gets each at a
quarter of its width unless its ``backbone_options`` say otherwise (``width: 1`` is the published
size). The other entries close the gap to the plain reference network that the G-band cell folds
measured (benchmarks/results/gband_backbones.md, HR, 48 px, 955 test images of 22 cells, accuracy
against plain_cnn's 94.5 %, paired by image, 95 % bootstrap over cells):

* ResNet-50 x0.25: 91.6 % (-2.8 [-4.5, -1.4]); with every residual block's last BatchNorm started
  at zero 94.3 % (-0.1 [-1.5, +1.2]). ResNet-18 does not gain from it (94.3 % -> 93.5 %).
* VGG-19 x0.25: 90.9 % with the published dropout 0.5 in its dense head, 93.2 % with 0.2, 93.4 %
  (-1.1 [-2.3, +0.0]) with none; without dropout and 24 passes instead of 18, 93.9 % (-0.5
  [-1.3, +0.2]): the default (its 19 plain layers learn slower than the residual networks).
* DCNN (the published baseline, no BatchNorm, sigmoid dense layers): 87.5 % (-6.9), 90.8 % with 54
  passes, about 91 % with 54 passes at twice the width; left at its published form and recipe,
  a baseline that the networks with BatchNorm beat.
* Xception, Inception-ResNet-v2, ResNet-18 x0.25: within half a point of it as they are.

Kept free of torch: the workflow's config validation reads it.
"""

from __future__ import annotations

from karyosr.defaults import where_silent

BACKBONE_DEFAULTS: dict[str, dict] = {
    "plain_cnn": {},
    "dcnn": {},
    "resnet18": {"backbone_options": {"width": 0.25}},
    "resnet50": {"backbone_options": {"width": 0.25, "zero_init_residual": True}},
    "vgg19": {"backbone_options": {"width": 0.25, "dropout": 0.0}, "epochs": 24},
    "xception": {"backbone_options": {"width": 0.25}},
    "inception_resnet_v2": {"backbone_options": {"width": 0.25}},
}


def with_backbone_defaults(experiment: dict, given: set[str]) -> dict:
    """``experiment`` with its backbone's defaults for every key the config did not give
    (``given``: the experiment's keys before the schema filled in its own defaults); backbone
    options merge key by key, the given ones winning."""
    return where_silent(experiment, given, BACKBONE_DEFAULTS[experiment["backbone"]], "backbone_options")
