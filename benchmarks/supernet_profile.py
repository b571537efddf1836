"""Where a super-network's training time goes, and what makes it fast, on one CPU thread.

A super-network (Super-Xception) trains SR layers end to end in front of a classifier from LR
input. The published SRCNN layers (9x9x64, 5x5x32, 5x5x1) run at HR resolution, so at 48 px they
cost several times the classifier behind them. This script times one training step (AdamW, batch
64, x4: 12 px LR in, 48 px into the backbone) of:

* the two-stage classifier alone (the backbone on 48 px images): what the super-network is held to;
* the super-network with the published SRCNN layers, and with variants: channels-last memory
  format, a 5x5 first kernel, and the narrow layers the G-band study uses (16/8 channels, 5-3-3);

and splits each step into SR layers and backbone (the step minus the backbone-alone step), with the
arithmetic (multiply-adds of every convolution, forward and backward = 3x forward) and the rate
reached. Writes benchmarks/results/supernet_profile.{md,json}.

    python benchmarks/supernet_profile.py [--steps 10] [--backbones plain_cnn:1 resnet18:0.25]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from common import RESULTS, record
from karyosr.classify.backbones import build_backbone
from karyosr.classify.supernet import SuperNetwork
from karyosr.sr import archs

SCALE, HR_PX, BATCH = 4, 48, 64
PUBLISHED = {"channels": [64, 32], "kernels": [9, 5, 5]}
VARIANTS = {
    "published SRCNN layers": (PUBLISHED, False),
    "published, channels-last": (PUBLISHED, True),
    "first kernel 5x5 (variant)": ({"channels": [64, 32], "kernels": [5, 5, 5]}, True),
    "narrow 16/8, 5-3-3 (the study's variant)": ({"channels": [16, 8], "kernels": [5, 3, 3]}, True),
}


def conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every convolution and linear layer in one forward pass of ``x``."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.weight[0].numel()  # in/groups x kh x kw
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return total


def step_seconds(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, steps: int, channels_last: bool) -> float:
    """Median seconds of one AdamW training step."""
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def profile_backbone(name: str, width: float, steps: int, lr_images, hr_images, labels) -> list[dict]:
    """Step times of the two-stage classifier and of every super-network variant on ``name``."""

    def backbone():
        return build_backbone(name, width=width)

    rows = []
    for channels_last in (False, True):
        net = backbone()
        macs = conv_macs(net, hr_images)
        seconds = step_seconds(net, hr_images, labels, steps, channels_last)
        rows.append({"backbone": name, "width": width,
                     "network": f"{name} x{width:g} alone (two-stage classifier)"
                                + (", channels-last" if channels_last else ""),
                     "step_s": seconds, "sr_s": 0.0, "gmacs": 3 * macs / 1e9})
    reference = min(row["step_s"] for row in rows)
    for variant, (options, channels_last) in VARIANTS.items():
        sr = archs.build_sr("srcnn", SCALE, input_shift=0.5, **options)
        net = SuperNetwork(sr, backbone(), SCALE)
        macs = conv_macs(net, lr_images)
        sr_macs = conv_macs(sr, lr_images)
        seconds = step_seconds(net, lr_images, labels, steps, channels_last)
        alone = rows[1 if channels_last else 0]["step_s"]
        rows.append({"backbone": name, "width": width, "network": f"super-network: {variant}", "step_s": seconds,
                     "sr_s": seconds - alone, "gmacs": 3 * macs / 1e9, "sr_gmacs": 3 * sr_macs / 1e9})
    for row in rows:
        row["gflops"] = 2 * row["gmacs"] / row["step_s"]
        row["vs_two_stage"] = row["step_s"] / reference
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backbones", nargs="+", default=["plain_cnn:1", "resnet18:0.25"],
                        help="backbone:width pairs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lr_images = torch.rand(BATCH, 1, HR_PX // SCALE, HR_PX // SCALE)
    hr_images = torch.rand(BATCH, 1, HR_PX, HR_PX)
    labels = torch.randint(0, 24, (BATCH,))
    lines = ["# Super-network training step: where the time goes", "",
             f"One AdamW step, batch {BATCH}, x{SCALE} ({HR_PX // SCALE} px LR, {HR_PX} px into the backbone), "
             f"{args.threads} CPU thread(s), median of {args.steps} steps; multiply-adds of every convolution, "
             "forward and backward (3x forward). 'SR layers': the step minus the backbone-alone step in the same "
             "memory format. 'vs two-stage': the step against the two-stage classifier's fastest step.", ""]
    rows = []
    for spec in args.backbones:
        name, _, width = spec.partition(":")
        found = profile_backbone(name, float(width or 1), args.steps, lr_images, hr_images, labels)
        rows += found
        lines += [f"## {name} x{float(width or 1):g}", "",
                  "| network | step (ms) | SR layers (ms) | GMAC per step | of it SR layers | GFLOPS | vs two-stage |",
                  "|---|---|---|---|---|---|---|"]
        for row in found:
            lines.append(f"| {row['network']} | {1000 * row['step_s']:.0f} | {1000 * row['sr_s']:.0f} | "
                         f"{row['gmacs']:.1f} | {row.get('sr_gmacs', 0):.1f} | {row['gflops']:.1f} | "
                         f"{row['vs_two_stage']:.2f}x |")
        lines.append("")
    (RESULTS / "supernet_profile.md").write_text("\n".join(lines))
    record("supernet_profile", {"backbones": args.backbones, "threads": args.threads,
                                "batch": BATCH, "hr_px": HR_PX, "scale": SCALE, "rows": rows})


if __name__ == "__main__":
    main()
