"""Training and inference throughput of every SR architecture (images/s), CPU and, when a GPU is
visible, CUDA in fp32 and bf16.

    python benchmarks/sr_throughput.py [--size demo|published] [--steps 20]

Training: Adam steps on batches of 16 HR patches of 48 px (LR 12 px at x4), images/s = patches/s.
Inference: whole 96 px HR images (24 px LR), batch 64. The device is named in the results file.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import yaml

from common import REPO, record
from karyosr.engine import autocast
from karyosr.sr import archs
from karyosr.sr.inference import super_resolve
from karyosr.weights import count_parameters

PUBLISHED = {"srcnn": {}, "srresnet": {}, "rrdbnet": {}, "srfbn": {}, "unet_sharpen": {}}


def demo_options() -> dict[str, dict]:
    models = yaml.safe_load((REPO / "config/config.yaml").read_text())["sr"]["models"]
    options = {}
    for model in models:
        options.setdefault(model["arch"], model.get("options", {}))
    return options


def measure(arch: str, options: dict, device: torch.device, bf16: bool, steps: int) -> dict:
    torch.manual_seed(0)
    model = archs.build_sr(arch, 4, **options).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    lr, hr = torch.rand(16, 1, 12, 12, device=device), torch.rand(16, 1, 48, 48, device=device)

    def train_step():
        with autocast(device, bf16):
            out = model(lr) if not getattr(model, "input_upsampled", False) else model(F.interpolate(lr, scale_factor=4))
            loss = sum(F.l1_loss(o.float(), hr) for o in (out if isinstance(out, list) else [out]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    for _ in range(3):
        train_step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    train_rate = steps * 16 / (time.perf_counter() - start)

    model.eval()
    batch = torch.rand(64, 1, 24, 24, device=device)
    with torch.no_grad():
        with autocast(device, bf16):
            super_resolve(model, batch, 4)
        sync()
        start = time.perf_counter()
        for _ in range(max(2, steps // 4)):
            with autocast(device, bf16):
                super_resolve(model, batch, 4)
        sync()
        infer_rate = max(2, steps // 4) * 64 / (time.perf_counter() - start)
    return {"parameters": count_parameters(model), "train_images_per_s": round(train_rate, 1),
            "infer_images_per_s": round(infer_rate, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["demo", "published"], default="demo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = demo_options() if args.size == "demo" else PUBLISHED
    runs = [(torch.device("cpu"), False)]
    if torch.cuda.is_available():
        runs += [(torch.device("cuda"), False), (torch.device("cuda"), True)]
    results = {}
    for device, bf16 in runs:
        name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({args.threads} threads)"
        key = f"{name} {'bf16' if bf16 else 'fp32'}"
        results[key] = {arch: measure(arch, options.get(arch, {}), device, bf16, args.steps) for arch in PUBLISHED}
    record(f"sr_throughput_{args.size}", {"size": args.size, "steps": args.steps, "options": options,
                                          "results": results})


if __name__ == "__main__":
    main()
