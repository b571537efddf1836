"""The ``karyosr`` command line: trained models applied to image files outside the workflow.

    karyosr enhance MODEL [-i] IMAGE_OR_FOLDER... -o OUT   super-resolve images with an SR model
    karyosr classify MODEL [-i] IMAGE_OR_FOLDER... [-o CSV] classify single-chromosome images
    karyosr info MODEL                                   what a model file says about its model
    karyosr quality IMAGE_OR_FOLDER... [--reference DIR] NIQE, PIQE (and PSNR, SSIM, MSE) per image

argparse, because four subcommands with a handful of options need no third-party CLI library
(one dependency fewer in every environment that installs karyosr).

Models are ``model.safetensors`` files written by the workflow (see karyosr.model_file); SR
models written as ``model.pt`` by earlier versions load too, and so do published BasicSR /
Real-ESRGAN RRDBNet and MSRResNet weights (karyosr.sr.published). The options follow Real-ESRGAN's
and BasicSR's scripts where they overlap (``-i``, ``-o``, ``--suffix``, ``--ext``, ``--tile``,
``--fp32``/``--half``). TIFFs are written with the input's pixel size scaled by the SR factor
(karyosr.io.tiff). Inference is the workflow's own
(``sr.infer.predict_tiled`` and ``classify.predict.infer``), so an image gets the same output here as in
the workflow. torch is imported only by the commands that run a model, so ``--help``, ``info``
on a safetensors file and ``quality`` start quickly.

Models record the grey-level statistics of their training images (``domain``, see karyosr.domain);
``enhance`` and ``classify`` skip images outside them (mean grey, spread, background, polarity)
with the reason, unless ``--force``, which runs them and prints the warning.

Exit status: 0 when every file was processed, 1 when some were skipped (each named on stderr with
the reason), 2 for a usage error or a model file that cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
# --ext auto keeps the input's format, but JPEG is lossy: an enhanced JPEG is written as PNG,
# which keeps every output pixel (--ext jpg writes JPEG anyway).
OUTPUT_SUFFIX = {".jpg": ".png", ".jpeg": ".png"}
OUTPUT_EXTENSIONS = ("auto", "png", "tif", "jpg")
DEFAULT_MAX_PIXELS = 50_000_000  # ingest.max_pixels' default: larger files are refused undecoded


class UsageError(Exception):
    """A problem with the command's arguments or model: reported on stderr, exit status 2."""


@dataclass
class Item:
    path: Path  # the input file
    name: Path  # its name under the output folder (the folder's own name first for folder inputs)


@dataclass
class Failures:
    entries: list = field(default_factory=list)  # (path, reason)

    def add(self, path, reason: str) -> None:
        self.entries.append((str(path), reason))

    def report(self, command: str) -> int:
        for path, reason in self.entries:
            print(f"karyosr {command}: skipped {path}: {reason}", file=sys.stderr)
        return 1 if self.entries else 0


class Progress:
    """``done/total`` on stderr: one line redrawn on a terminal, a line per file in a log."""

    def __init__(self, label: str, total: int, quiet: bool):
        self.label, self.total, self.quiet = label, total, quiet
        self.terminal = sys.stderr.isatty()
        self.done = 0

    def advance(self, path: Path) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.terminal:
            width = 30
            filled = round(width * self.done / max(self.total, 1))
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} ")
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(f"{self.label} {self.done}/{self.total} {path}\n")
        sys.stderr.flush()


def _wanted(relative: Path, pattern: str | None) -> bool:
    """A folder's file to take: not hidden, and matching ``pattern`` (fnmatch on the path below the
    folder, so ``*.tif`` matches in sub-folders too) or, without one, an image file name."""
    if any(part.startswith(".") for part in relative.parts):
        return False
    return fnmatch.fnmatch(relative.as_posix(), pattern) if pattern else relative.suffix.lower() in IMAGE_SUFFIXES


def collect(inputs: list[str], failures: Failures, pattern: str | None = None) -> list[Item]:
    """The image files named by ``inputs``: files as given, folders searched recursively for
    PNG, TIFF, BMP and JPEG files, or the files matching ``pattern`` (--glob); hidden files are
    skipped. Missing paths and folders without a file to take are failures."""
    items = []
    for argument in inputs:
        path = Path(argument)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and _wanted(f.relative_to(path), pattern))
            if not files:
                wanted = f"files matching --glob {pattern}" if pattern else f"{', '.join(IMAGE_SUFFIXES)} files"
                failures.add(path, f"folder holds no {wanted}")
            name = path.resolve().name
            items += [Item(f, Path(name) / f.relative_to(path)) for f in files]
        elif path.is_file():
            items.append(Item(path, Path(path.name)))
        else:
            failures.add(path, "no such file or folder")
    return items


def read_decoded(path: Path, max_pixels: int):
    """A file decoded as ingest decodes it (karyosr.io.images.Decoded: a 2-D uint8 / uint16
    array, colour -> luminance, with a TIFF's calibration); raises ValueError (ImageRejected) or
    OSError with the reason."""
    from karyosr.io.images import decode_image

    return decode_image(path.read_bytes(), max_pixels, path.name)


def read_image(path: Path, max_pixels: int):
    """The 2-D uint8 / uint16 array of a file (see read_decoded)."""
    return read_decoded(path, max_pixels).image


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load(loader, path: str):
    try:
        return loader(path)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot use model {path}: {exc}") from exc


def out_of_domain(path: Path, image, model_domain: dict | None, force: bool, failures: Failures,
                  command: str) -> bool:
    """Whether ``image`` must be skipped: its statistics lie outside the model's training domain
    (karyosr.domain.compare) and ``force`` is off (then it is a failure naming the figures). With
    ``force`` the warning is printed and the image processed."""
    from karyosr import domain
    from karyosr.io.images import data_range

    warnings = domain.compare(domain.image_statistics(image, data_range(image.dtype)), model_domain)
    if not warnings:
        return False
    text = "; ".join(warnings)
    if force:
        print(f"karyosr {command}: warning: {path}: {text}: results are unreliable (processed: --force)",
              file=sys.stderr)
        return False
    failures.add(path, f"{text}: results are unreliable; retrain on your images or use --force")
    return True


def _check_model(path: str, kind: str) -> None:
    """Refuse a missing model or one of another kind before torch is imported (seconds)."""
    from karyosr import model_file

    metadata = _load(model_file.read_metadata, path)
    _load(lambda p: model_file.require_kind(model_file.ModelFile(Path(p), {}, metadata), kind), path)


def _setup_torch(args):
    import torch

    from karyosr.engine import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return pick_device(args.device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


# --------------------------------------------------------------------------- enhance


def output_paths(items: list[Item], out_dir: Path, suffix: str, ext: str, failures: Failures) -> list[tuple[Item, Path]]:
    """Where each input's result goes: its name with ``suffix`` before the extension, the input's
    extension (JPEG as PNG) for ``ext`` 'auto', else ``.ext``. An output that would replace an
    input file or another input's output is a failure, so no input is ever overwritten."""
    inputs = {item.path.resolve() for item in items}
    planned, taken = [], {}
    for item in items:
        kept = item.name.suffix
        extension = OUTPUT_SUFFIX.get(kept.lower(), kept) if ext == "auto" else f".{ext}"
        target = out_dir / item.name.with_name(item.name.stem + suffix + extension)
        resolved = target.resolve()
        if resolved in inputs:
            failures.add(item.path, f"its output {target} would overwrite an input file; choose another -o folder "
                                    "or a --suffix")
        elif resolved in taken:
            failures.add(item.path, f"its output {target} is already the output of {taken[resolved]}")
        else:
            taken[resolved] = item.path
            planned.append((item, target))
    return planned


def _load_sr(args):
    """The SR model of ``args.model`` and its metadata: a karyosr model file, or a published
    weights file without karyosr metadata (BasicSR / Real-ESRGAN .pth), whose network is read from
    its keys (``--arch`` when they do not tell)."""
    from karyosr import model_file

    metadata = _load(model_file.read_metadata, args.model)
    if metadata:
        if args.arch:
            raise UsageError(f"--arch {args.arch}: {args.model} is a karyosr model file, which names its own "
                             "architecture; --arch is for published weights files")
        _load(lambda p: model_file.require_kind(model_file.ModelFile(Path(p), {}, metadata), "sr"), args.model)
        from karyosr.sr import infer

        return _load(infer.load_model, args.model)
    from karyosr.sr import published

    return _load(lambda p: published.load_model(p, args.arch), args.model)


def precision(args, device, command: str):
    """(bf16 autocast flag for the inference functions, an extra autocast context): the workflow's
    bf16 on CUDA unless --fp32; with --half on a GPU without bf16, float16 autocast instead.
    --half on the CPU runs float32 with a warning: the CPU gains nothing from half precision."""
    import torch

    if args.half and device.type != "cuda":
        print(f"karyosr {command}: warning: --half applies on a CUDA GPU; running in float32 on {device}",
              file=sys.stderr)
        return False, contextlib.nullcontext()
    if args.half and not torch.cuda.is_bf16_supported():
        return False, torch.autocast("cuda", dtype=torch.float16)
    return not args.fp32, contextlib.nullcontext()


def encode_output(image, target: Path, decoded, scale: int) -> bytes:
    """The enhanced image as ``target``'s format: TIFF through karyosr.io.tiff with the input's
    calibration scaled by ``scale`` (ImageJ, OME or resolution tags), other formats through
    OpenCV; ValueError with the reason otherwise (16-bit as JPEG)."""
    import cv2

    from karyosr.io import tiff

    extension = target.suffix.lower()
    if extension in (".tif", ".tiff"):
        calibration = decoded.calibration.scaled(scale) if decoded.calibration else None
        return tiff.encode(image, calibration)
    if extension in (".jpg", ".jpeg") and image.dtype != "uint8":
        raise ValueError(f"a {image.dtype} image cannot be written as JPEG (8 bits only); use --ext png or tif")
    ok, encoded = cv2.imencode(extension, image)
    if not ok:
        raise ValueError(f"cannot encode the output as {extension}")
    return encoded.tobytes()


def cmd_enhance(args) -> int:
    import numpy as np

    from karyosr.io import atomic
    from karyosr.io.images import data_range
    from karyosr.sr import infer

    model, meta = _load_sr(args)
    device = _setup_torch(args)
    model = model.to(device)
    bf16, autocast = precision(args, device, "enhance")
    scale = int(meta["scale"])
    suffix = f"_{meta['name']}_x{scale}" if args.suffix is None else args.suffix
    failures = Failures()
    items = collect(input_paths(args), failures, args.glob)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir}: exists and is not a folder")
    planned = output_paths(items, out_dir, suffix, args.ext, failures)
    progress = Progress("enhance", len(planned), args.quiet)
    written = 0
    for chunk in chunks(planned, args.batch_size):
        groups: dict[tuple, list] = {}
        for item, target in chunk:
            try:
                decoded = read_decoded(item.path, args.max_pixels)
            except (OSError, ValueError) as exc:
                failures.add(item.path, str(exc))
                progress.advance(item.path)
                continue
            if out_of_domain(item.path, decoded.image, meta.get("domain"), args.force, failures, "enhance"):
                progress.advance(item.path)
                continue
            groups.setdefault((decoded.image.shape, decoded.image.dtype.str), []).append((item, target, decoded))
        for (shape, _), members in groups.items():
            lr = np.stack([decoded.image for _, _, decoded in members])
            tile = infer.auto_tile(shape, scale, model, overlap=args.overlap) if args.tile == "auto" else args.tile
            with autocast:
                sr = infer.predict_tiled(model, lr, scale, data_range(lr.dtype), device, tile, args.overlap,
                                         batch_size=args.batch_size, bf16=bf16)
            for (item, target, decoded), out in zip(members, sr):
                try:
                    atomic.write_bytes(target, encode_output(out, target, decoded, scale))
                    written += 1
                except ValueError as exc:
                    failures.add(item.path, str(exc))
                progress.advance(item.path)
    if not args.quiet:
        print(f"karyosr enhance: {written} image(s) enhanced x{scale} into {out_dir}", file=sys.stderr)
    return failures.report("enhance")


# --------------------------------------------------------------------------- classify


def cmd_classify(args) -> int:
    _check_model(args.model, "classifier")
    import numpy as np
    import pandas as pd

    from karyosr.classify import inputs, karyotype, predict
    from karyosr.io import atomic
    from karyosr.io.images import data_range

    model, meta = _load(predict.load_classifier, args.model)
    _load(lambda _: inputs.input_crop(meta), args.model)
    device = _setup_torch(args)
    model = model.to(device)
    bf16, autocast = precision(args, device, "classify")
    names = list(meta["class_names"])
    failures = Failures()
    items = collect(input_paths(args), failures, args.glob)
    if args.output and Path(args.output).resolve() in {item.path.resolve() for item in items}:
        raise UsageError(f"-o {args.output}: is one of the input files")
    progress = Progress("classify", len(items), args.quiet)
    done, probabilities = [], []
    for chunk in chunks(items, args.batch_size):
        groups: dict[str, list] = {}
        for item in chunk:
            try:
                image = inputs.prepare_input(read_image(item.path, args.max_pixels), meta)
            except (OSError, ValueError) as exc:
                failures.add(item.path, str(exc))
                progress.advance(item.path)
                continue
            # The cropped image, as the training images were when their domain was measured.
            if out_of_domain(item.path, image, meta.get("domain"), args.force, failures, "classify"):
                progress.advance(item.path)
                continue
            groups.setdefault(image.dtype.str, []).append((item, image))
        for members in groups.values():
            stack = np.stack([image for _, image in members])
            with autocast:
                p, _ = predict.infer(model, stack, data_range(stack.dtype), device, bf16=bf16, tta=bool(meta["tta"]),
                                     batch_size=args.batch_size, temperature=predict.temperature_of(meta))
            for (item, _), row in zip(members, p):
                done.append(item)
                probabilities.append(row)
                progress.advance(item.path)
    probabilities = np.array(probabilities).reshape(len(done), len(names))
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :3]
    table = pd.DataFrame({"file": [str(item.path) for item in done]})
    for rank, column in enumerate(("predicted", "second", "third")):
        table[column] = [names[k] for k in top[:, rank]] if len(done) else []
        table[f"{column}_probability"] = probabilities[np.arange(len(done)), top[:, rank]].round(6) if len(done) else []
    cells = None
    if args.cell_decode and len(done):
        table["cell"] = [str(item.path.parent) for item in done]
        decoded, cells = karyotype.decode(pd.DataFrame({
            "experiment": meta["name"], "seed": 0, "cell": table["cell"], "predicted": top[:, 0],
            "probabilities": list(probabilities)}),
            {"flag_likelihood_ratio": args.flag_likelihood_ratio or schema_defaults("classify")["flag_likelihood_ratio"],
             "complete_cells": args.complete_cells})
        table["decoded"] = [names[k] for k in decoded["predicted_decoded"]]
        cells = cells.drop(columns=["experiment", "seed"])
    text = table.to_csv(index=False)
    if args.output:
        atomic.write_text(args.output, text)
        if cells is not None:
            out = Path(args.output)
            atomic.write_text(out.with_name(out.stem + "_cells.csv"), cells.to_csv(index=False))
    else:
        sys.stdout.write(text)
    if cells is not None and not args.quiet:
        for cell in cells.itertuples():
            flag = f"; flagged: {cell.reason}" if cell.flagged else ""
            # Decoding that moves many labels is the classifier disagreeing with a normal karyotype,
            # not a correction: its labels and sex call are then no evidence either way.
            doubt = (f" (more than a quarter: this cell's labels and sex call are not reliable)"
                     if cell.relabelled > cell.chromosomes / 4 else "")
            print(f"karyosr classify: cell {cell.cell}: {cell.chromosomes} chromosomes, {cell.sex}, "
                  f"{cell.relabelled} relabelled by decoding{doubt}{flag}", file=sys.stderr)
    return failures.report("classify")


# --------------------------------------------------------------------------- info


def _value(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _published_info(path: str) -> dict:
    """What a weights file without karyosr metadata holds: a published SR network's layout, or a
    UsageError saying it is neither a karyosr model nor a recognised published network."""
    from karyosr import model_file
    from karyosr.sr import published

    try:
        found = published.layout(_load(model_file.read_state_dict, path), path)
    except ValueError as exc:
        raise UsageError(f"{path}: no karyosr metadata (not a model the workflow wrote) and not a published SR "
                         f"network either: {exc}") from exc
    return {"kind": "sr", "published": True, "name": Path(path).stem, **found}


def cmd_info(args) -> int:
    from karyosr import model_file

    meta = _load(model_file.read_metadata, args.model)
    if not meta:
        meta = _published_info(args.model)
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    from karyosr import domain

    first = ("kind", "published", "name", "description", "arch", "backbone", "input", "scale", "input_size", "bit_depth",
             "best_epoch", "validation", "profile", "crop", "domain", "karyosr_version", "config_hash")
    keys = [k for k in first if k in meta] + sorted(k for k in meta if k not in first)
    width = max(map(len, keys))
    for key in keys:
        if key == "domain" and isinstance(meta[key], dict):
            lines = domain.describe(meta[key])
            print(f"{key:<{width}}  {lines[0]}")
            for line in lines[1:]:
                print(f"{'':<{width}}  {line}")
        else:
            print(f"{key:<{width}}  {_value(meta[key])}")
    return 0


# --------------------------------------------------------------------------- quality

def schema_defaults(section: str) -> dict:
    """A config section's keys at their schema defaults: commands default as the workflow does."""
    from karyosr.config import load_schema

    keys = load_schema()["properties"][section]["properties"]
    return {name: spec["default"] for name, spec in keys.items() if "default" in spec}



def _references(folder: str, max_pixels: int) -> tuple[dict[str, list[Path]], dict[Path, object]]:
    """The reference folder's image files by stem, and the decoded ones (unreadable ones noted)."""
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"--reference {folder}: not a folder")
    items = collect([folder], Failures())
    if not items:
        raise UsageError(f"--reference {folder}: holds no image files")
    by_stem: dict[str, list[Path]] = {}
    decoded = {}
    for item in items:
        by_stem.setdefault(item.path.stem, []).append(item.path)
        try:
            decoded[item.path] = read_image(item.path, max_pixels)
        except (OSError, ValueError) as exc:
            decoded[item.path] = exc
    return by_stem, decoded


def _pristine(args, decoded: dict, metrics: dict):
    """The NIQE pristine model: --niqe-model, else fitted on the readable reference images, else
    None (with the reason on stderr)."""
    from karyosr.quality import niqe

    if args.niqe_model:
        try:
            return niqe.load_model(args.niqe_model)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot use NIQE model {args.niqe_model}: {exc}") from exc
    if not decoded:
        print("karyosr quality: note: no NIQE pristine model (give --niqe-model, e.g. the workflow's "
              "results/metrics/niqe_pristine.npz, or --reference): niqe left empty", file=sys.stderr)
        return None
    images = [image for image in decoded.values() if not isinstance(image, Exception)]
    try:
        mu, cov = niqe.fit_pristine(images, patch_size=args.niqe_patch_size,
                                    sharpness_threshold=metrics["niqe_sharpness_threshold"])
        return niqe.PristineModel(mu, cov, "paper", args.niqe_patch_size)
    except ValueError as exc:
        print(f"karyosr quality: note: cannot fit NIQE's pristine model on the reference images ({exc}): "
              "niqe left empty", file=sys.stderr)
        return None


def _reference_of(path: Path, image, args, by_stem: dict, decoded: dict):
    """The reference image of ``path`` (same stem), or ValueError with the reason."""
    candidates = by_stem.get(path.stem, [])
    if not candidates:
        raise ValueError(f"no reference image named {path.stem}.* in {args.reference}")
    if len(candidates) > 1:
        raise ValueError(f"several reference images named {path.stem}.*: {', '.join(map(str, candidates))}")
    reference = decoded[candidates[0]]
    if isinstance(reference, Exception):
        raise ValueError(f"its reference {candidates[0]} is unreadable: {reference}")
    if reference.shape != image.shape:
        raise ValueError(f"size {image.shape[0]}x{image.shape[1]} differs from its reference {candidates[0]} "
                         f"({reference.shape[0]}x{reference.shape[1]}); full-reference scores need the same size")
    if reference.dtype != image.dtype:
        raise ValueError(f"bit depth differs from its reference {candidates[0]} ({image.dtype} against "
                         f"{reference.dtype})")
    return reference


def cmd_quality(args) -> int:
    import numpy as np
    import pandas as pd

    from karyosr.io import atomic
    from karyosr.quality import piqe
    from karyosr.quality.full_reference import score
    from karyosr.quality.scoring import no_reference

    failures = Failures()
    items = collect(input_paths(args), failures, args.glob)
    if args.output and Path(args.output).resolve() in {item.path.resolve() for item in items}:
        raise UsageError(f"-o {args.output}: is one of the input files")
    by_stem, decoded = _references(args.reference, args.max_pixels) if args.reference else ({}, {})
    metrics = schema_defaults("metrics")
    pristine = _pristine(args, decoded, metrics)
    progress = Progress("quality", len(items), args.quiet)
    rows = []
    for item in items:
        progress.advance(item.path)
        try:
            image = read_image(item.path, args.max_pixels)
            row = {"file": str(item.path), "height": image.shape[0], "width": image.shape[1],
                   "niqe": np.nan, "piqe": np.nan}
            if args.reference:
                reference = _reference_of(item.path, image, args, by_stem, decoded)
                scores = score(reference[None], image[None], metrics, np.ones((1,) + image.shape, bool))
                row.update(scores[["psnr", "ssim", "mse"]].iloc[0].to_dict())
        except (OSError, ValueError) as exc:
            failures.add(item.path, str(exc))
            continue
        try:
            if pristine is not None:
                quality = no_reference([image], pristine).iloc[0]
                row.update(niqe=quality["niqe"], piqe=quality["piqe"])
                if quality["niqe_error"] and not args.quiet:
                    print(f"karyosr quality: note: {item.path}: no NIQE: {quality['niqe_error']}", file=sys.stderr)
            else:
                row["piqe"] = piqe.piqe(image)
        except ValueError as exc:  # PIQE needs 16x16 pixels
            if not args.quiet:
                print(f"karyosr quality: note: {item.path}: no NIQE / PIQE: {exc}", file=sys.stderr)
        rows.append(row)
    columns = ["file", "height", "width", "niqe", "piqe"] + (["psnr", "ssim", "mse"] if args.reference else [])
    table = pd.DataFrame(rows, columns=columns).round(6)
    text = table.to_csv(index=False)
    if args.output:
        atomic.write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return failures.report("quality")


# --------------------------------------------------------------------------- parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _tile(text: str) -> int | str:
    return text if text == "auto" else _non_negative(text)


def input_paths(args) -> list[str]:
    """The positional inputs and the -i ones, in that order."""
    return list(args.inputs) + list(args.input or [])


def _input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER", help="image files and folders (or -i)")
    parser.add_argument("-i", "--input", action="append", metavar="IMAGE_OR_FOLDER",
                        help="an image file or folder (repeatable; beside or instead of the positional ones)")
    parser.add_argument("--glob", metavar="PATTERN",
                        help="take the files of input folders that match PATTERN, e.g. '*.tif' (quoted; matched "
                             "against the path below the folder; default: every PNG, TIFF, BMP and JPEG file)")


def _run_options(parser: argparse.ArgumentParser, batch: int) -> None:
    parser.add_argument("--device", default="auto", help="'auto' (a CUDA GPU when visible, else the CPU), 'cpu', "
                        "'cuda' or 'cuda:N' (default: auto)")
    parser.add_argument("--batch-size", type=_positive, default=batch,
                        help=f"images decoded and run together (default: {batch})")
    parser.add_argument("--threads", type=_positive, help="CPU threads for torch (default: torch's choice)")
    precision_options = parser.add_mutually_exclusive_group()
    precision_options.add_argument("--fp32", action="store_true",
                                   help="on CUDA, run in float32 instead of bf16 autocast (the default there)")
    precision_options.add_argument("--half", action="store_true",
                                   help="half precision on CUDA: bf16 autocast where the GPU has bf16 (the default "
                                        "there, as the workflow's sr.bf16), fp16 autocast where it has not (V100, "
                                        "T4); on the CPU it is ignored with a warning (float32)")
    parser.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse larger images without decoding them (default: {DEFAULT_MAX_PIXELS})")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")


def build_parser() -> argparse.ArgumentParser:
    from karyosr import __version__

    parser = argparse.ArgumentParser(prog="karyosr", description="Apply trained karyosr models to image files.",
                                     epilog="Run 'karyosr COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"karyosr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enhance = commands.add_parser(
        "enhance", help="super-resolve images with an SR model",
        description="Super-resolve image files (PNG, TIFF, BMP, JPEG; 8 or 16 bit, colour is reduced to grey) "
                    "with an SR model: a karyosr model file, or a published BasicSR / Real-ESRGAN RRDBNet or "
                    "MSRResNet .pth run as it is (its network read from the weights' names; RGB weights reduced to "
                    "grey). Each output is named after its input with --suffix, keeps its bit depth and, as TIFF, "
                    "the input's pixel size scaled by the SR factor (resolution tags, ImageJ, OME); a folder's files "
                    "go to OUT/<folder name>/, keeping sub-folders. Inputs are never overwritten. Unreadable files "
                    "are skipped and named with the reason (exit status 1).")
    enhance.add_argument("model", help="model.safetensors of an SR model (or an SR model.pt), or a published "
                                       "RRDBNet / MSRResNet weights file (.pth)")
    _input_options(enhance)
    enhance.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created if missing)")
    enhance.add_argument("--suffix", help="added to each output's file name before the extension (default: "
                                          "_<model name>_x<scale>; '' keeps the input's name)")
    enhance.add_argument("--ext", choices=OUTPUT_EXTENSIONS, default="auto",
                         help="output format: auto keeps the input's (JPEG inputs as lossless PNG), or png, tif, jpg "
                              "(8-bit images only) (default: auto)")
    enhance.add_argument("--arch", choices=("rrdbnet", "msrresnet"),
                         help="the network of a published weights file whose keys do not say it (ESRGAN and Real-ESRGAN generators: rrdbnet)")
    enhance.add_argument("--tile", type=_tile, default="auto",
                         help="tile side in LR pixels: images larger than this a side are run in seamless tiles (0: "
                              "whole images); auto runs an image whole when the model's forward pass over it fits in "
                              "1 GiB (measured on the model; karyosr.sr.infer.auto_tile), else in the largest tiles "
                              "that fit (default: auto)")
    enhance.add_argument("--overlap", type=_non_negative, default=16,
                         help="LR pixels of context read around each tile; overlapping tiles are blended with "
                              "ramps that ignore the outer half of the context, so tiles join without seams "
                              "(default: 16)")
    enhance.add_argument("--force", action="store_true",
                         help="also enhance images outside the model's training domain (their mean grey, grey "
                              "spread, background or polarity differ from the training images'); the warning is "
                              "still printed. Without it they are skipped with the reason (exit status 1)")
    _run_options(enhance, batch=16)
    enhance.set_defaults(handler=cmd_enhance)

    classify = commands.add_parser(
        "classify", help="classify single-chromosome images",
        description="Classify single-chromosome images with a classifier (or super-network) model. Each image is "
                    "cropped as the model's training images were (the image adaptive crop, with the polarity, "
                    "threshold and size in the model's metadata); images the crop's quality filters reject are "
                    "skipped with the reason. Classifiers of hr: and sr: inputs take HR images (for sr:, images "
                    "enhanced by that SR model), those of lr: and super: inputs take LR images. Writes a CSV table: "
                    "file, predicted class and the top 3 classes with their probabilities.")
    classify.add_argument("model", help="model.safetensors of a classifier")
    _input_options(classify)
    classify.add_argument("-o", "--output", metavar="CSV", help="write the table here (default: stdout)")
    classify.add_argument("--cell-decode", action="store_true",
                          help="the images of each folder are the chromosomes of one metaphase cell: label them "
                               "jointly as a normal karyotype (column 'decoded'), flag cells that may be "
                               "abnormal (printed, and written to <CSV stem>_cells.csv with -o)")
    classify.add_argument("--flag-likelihood-ratio", type=float,
                          help="with --cell-decode, flag a cell whose best labelling with one extra copy of a class "
                               "is at least this many times likelier than a normal one (default: the workflow's "
                               "classify.flag_likelihood_ratio)")
    classify.add_argument("--complete-cells", action="store_true",
                          help="with --cell-decode, every chromosome of each cell is among the inputs: flag cells of "
                               "fewer than 46 (classify.complete_cells)")
    classify.add_argument("--force", action="store_true",
                          help="also classify images whose crop lies outside the model's training domain (mean "
                               "grey, grey spread, background or polarity); the warning is still printed. Without "
                               "it they are skipped with the reason (exit status 1)")
    _run_options(classify, batch=64)
    classify.set_defaults(handler=cmd_classify)

    info = commands.add_parser("info", help="print a model file's metadata",
                               description="Print what a model file says about its model: architecture, scale, "
                                           "classes, crop settings, training data, validation metrics.")
    info.add_argument("model", help="a model.safetensors (or model.pt) file")
    info.add_argument("--json", action="store_true", help="print the metadata as JSON")
    info.set_defaults(handler=cmd_info)

    quality = commands.add_parser(
        "quality", help="image quality per file: NIQE, PIQE (and PSNR, SSIM, MSE against references)",
        description="Score image files without a reference (NIQE, PIQE; lower is better) and, with --reference, "
                    "against reference images of the same name (PSNR, SSIM, MSE over the whole image, as the "
                    "workflow's metrics rule computes them). Writes a CSV table, one row per image: file, height, "
                    "width, niqe, piqe[, psnr, ssim, mse]. NIQE needs a pristine model of good images, and none "
                    "fits every kind of image, so none is built in: it is --niqe-model when given (the workflow "
                    "writes its own to results/metrics/niqe_pristine.npz; published BasicSR .npz and MATLAB .mat "
                    "models load too), else one fitted on the --reference images ('paper' features, "
                    "--niqe-patch-size patches), else niqe is left empty (a note on stderr) and PIQE is still "
                    "given. Images NIQE or PIQE cannot score (flat, smaller than a patch) get an empty value and "
                    "a note; unreadable files, and with --reference files without a reference of the same size "
                    "and bit depth, are skipped with the reason (exit status 1).")
    _input_options(quality)
    quality.add_argument("--reference", metavar="DIR",
                         help="folder of reference images, matched to the inputs by file name without suffix "
                              "(searched recursively); adds psnr, ssim, mse")
    quality.add_argument("-o", "--output", metavar="CSV", help="write the table here (default: stdout)")
    quality.add_argument("--niqe-model", metavar="FILE",
                         help="NIQE pristine model (.npz or .mat), e.g. results/metrics/niqe_pristine.npz of a run")
    quality.add_argument("--niqe-patch-size", type=_positive, default=32,
                         help="patch size of a pristine model fitted on --reference images (even, >= 8; 32 suits "
                              "64-128 px chromosome crops, 96 natural images; default: 32)")
    quality.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS,
                         help=f"refuse larger images without decoding them (default: {DEFAULT_MAX_PIXELS})")
    quality.add_argument("-q", "--quiet", action="store_true", help="no progress or notes on stderr")
    quality.set_defaults(handler=cmd_quality)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "inputs" in args and not input_paths(args):
        parser.error(f"{args.command}: no IMAGE_OR_FOLDER given (positional or -i)")
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"karyosr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
