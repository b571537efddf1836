"""Whole-photo SR inference against its arithmetic floor (issue #24): the demo's MSRResNet-style
network (4 blocks x 32, x4, config/photos.yaml) on a generated 3264 x 1840 metaphase photo, tiled
as ``karyosr enhance --tile auto`` tiles it (``sr.infer.auto_tile``) and streamed into a
memory-mapped .npy, against the floor: the photo's floating-point operations at the rate the same
network reaches on single 256 px LR tiles (channels-last, inference mode), measured in the same run
with the same threads.

    taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/sr_tiled_photo.py [--threads 1] [--tile auto]

The enhancement runs in a child process, so its peak resident memory is its own (the photo's
generation and the floor's tiles do not count); numpy's peak (``tracemalloc``: the blend's buffers,
not torch's activations nor the memmap's pages) is recorded beside it. Times are wall and CPU
seconds; the ratio to the floor is given for both (CPU time does not count what other processes on
the same core take). Writes benchmarks/results/sr_tiled_photo.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from common import REPO, record

sys.path.insert(0, str(REPO / "src"))
from karyosr.dataset import photos  # noqa: E402
from karyosr.sr import archs, infer  # noqa: E402
from karyosr.sr.inference import super_resolve  # noqa: E402
from karyosr.sr.train import resolve_options  # noqa: E402

SCALE = 4
FLOOR_TILE = 256
OVERLAP = 16


def demo_network(photo: np.ndarray) -> torch.nn.Module:
    """The photo config's msrresnet with its input shift from the photo; the zero-initialised tail
    (the bicubic skip's start) drawn small, so the output is not the bicubic image."""
    entry = next(m for m in yaml.safe_load((REPO / "config/photos.yaml").read_text())["sr"]["models"]
                 if m["name"] == "msrresnet")
    torch.manual_seed(0)
    model = archs.build_sr(entry["arch"], SCALE, **resolve_options(entry["options"], photo[None]))
    torch.nn.init.normal_(model.tail.weight, std=1e-3)
    return model.eval()


def generated_photo(folder: Path) -> np.ndarray:
    table = photos.generate_photos(folder, {"n_slides": 1, "photos_per_slide": 1, "size": [1840, 3264],
                                            "spreads_fraction": 1.0}, seed=0)
    return cv2.imread(str(folder / table["file"].iloc[0]), cv2.IMREAD_GRAYSCALE)


def flops_per_lr_pixel(model: torch.nn.Module) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass per LR pixel: the
    convolutions' count grows with the pixels, so a 256 px tile gives it for any size."""
    tile = torch.zeros(1, 1, FLOOR_TILE, FLOOR_TILE).contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        super_resolve(model, tile, SCALE)
    return counter.get_total_flops() / FLOOR_TILE**2


def floor_rate(model: torch.nn.Module, repeats: int) -> dict:
    """GFLOPS on single 256 px LR tiles in channels-last and inference mode, the best of ``repeats``
    passes after a warm-up (wall and CPU time apart)."""
    model = model.to(memory_format=torch.channels_last)
    tile = torch.rand(1, 1, FLOOR_TILE, FLOOR_TILE).contiguous(memory_format=torch.channels_last)
    flops = flops_per_lr_pixel(model) * FLOOR_TILE**2
    walls, cpus = [], []
    with torch.inference_mode():
        super_resolve(model, tile, SCALE)
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            super_resolve(model, tile, SCALE)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return {"gflops_wall": flops / min(walls) / 1e9, "gflops_cpu": flops / min(cpus) / 1e9}


def peak_resident_bytes() -> int:
    """This process's own peak resident memory (getrusage's ru_maxrss would carry the parent's over exec)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmHWM"].split()[0]) * 1024


def enhance_photo(photo_path: Path, out_path: Path, tile_setting: str, threads: int) -> dict:
    """Child process: the photo enhanced as ``karyosr enhance`` does, into a memory-mapped .npy."""
    torch.set_num_threads(threads)
    photo = np.load(photo_path)
    model = demo_network(photo)
    cpu = torch.device("cpu")
    tile = infer.tile_for(tile_setting, photo.shape, SCALE, model, OVERLAP)
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8,
                                    shape=(1, photo.shape[0] * SCALE, photo.shape[1] * SCALE))
    rss_before = peak_resident_bytes()
    tracemalloc.start()
    wall, cpu_time = time.perf_counter(), time.process_time()
    infer.predict_tiled(model, photo[None], SCALE, 255.0, cpu, tile, OVERLAP, out=out)
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu_time
    numpy_peak = tracemalloc.get_traced_memory()[1]
    out.flush()
    windows = [(y1 - y0) * (x1 - x0) for y0, y1 in infer._windows(photo.shape[0], tile or max(photo.shape), OVERLAP)
               for x0, x1 in infer._windows(photo.shape[1], tile or max(photo.shape), OVERLAP)]
    return {"tile": tile, "windows": len(windows), "window_pixels": int(sum(windows)),
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
            "peak_rss_mb": round(peak_resident_bytes() / 2**20), "peak_rss_before_mb": round(rss_before / 2**20),
            "numpy_peak_mb": round(numpy_peak / 2**20, 1),
            "activation_bytes_per_lr_pixel": infer.activation_bytes_per_pixel(model, SCALE)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tile", default="auto", help="tile side in LR pixels, or auto (infer.auto_tile)")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the floor's 256 px tile")
    parser.add_argument("--child", nargs=2, metavar=("PHOTO", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(enhance_photo(Path(args.child[0]), Path(args.child[1]), args.tile, args.threads)))
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="karyosr-tiled-photo-") as tmp:
        photo = generated_photo(Path(tmp) / "photos")
        np.save(Path(tmp) / "photo.npy", photo)
        model = demo_network(photo)
        per_pixel = flops_per_lr_pixel(model)
        floor = floor_rate(model, args.repeats)
        child = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--tile", args.tile,
                                "--child", str(Path(tmp) / "photo.npy"), str(Path(tmp) / "out.npy")],
                               capture_output=True, text=True, check=True)
        enhanced = json.loads(child.stdout.strip().splitlines()[-1])
    photo_flops = per_pixel * photo.size
    floor_seconds = {"wall": photo_flops / floor["gflops_wall"] / 1e9, "cpu": photo_flops / floor["gflops_cpu"] / 1e9}
    record("sr_tiled_photo", {
        "network": "msrresnet (config/photos.yaml), x4", "threads": args.threads, "photo": list(photo.shape),
        "photo_tflop": round(photo_flops / 1e12, 3), "floor_tile": FLOOR_TILE,
        "floor_gflops": {"wall": round(floor["gflops_wall"], 1), "cpu": round(floor["gflops_cpu"], 1)},
        "floor_seconds": {k: round(v, 1) for k, v in floor_seconds.items()},
        "enhanced": enhanced,
        "tiled_arithmetic_over_whole": round(enhanced["window_pixels"] / photo.size, 3),
        "gflops": {"wall": round(photo_flops / enhanced["seconds"] / 1e9, 1),
                   "cpu": round(photo_flops / enhanced["cpu_seconds"] / 1e9, 1)},
        "ratio_to_floor": {"wall": round(enhanced["seconds"] / floor_seconds["wall"], 2),
                           "cpu": round(enhanced["cpu_seconds"] / floor_seconds["cpu"], 2)},
    })


if __name__ == "__main__":
    main()
