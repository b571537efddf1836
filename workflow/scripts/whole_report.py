from pathlib import Path

import pandas as pd
import yaml

from karyosr import logs
from karyosr.io import shards
from karyosr.report import figures, page, tables
from karyosr.report.findings import NO_REFERENCE_CAVEAT, change_findings, registration_findings, sr_findings
from karyosr.whole.quality import quality_summary

logs.setup(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
out_dir = Path(snakemake.output.html).parent
pairs = shards.read_table(inputs.pairs) if inputs.pairs else None
methods = tables.method_table(shards.read_table(inputs.summary), params.methods)
per_image = shards.read_table(inputs.per_image)
# Tiles of one slide share its staining and optics: the bootstrap resamples slides (groups).
# (every profile degrades the same tiles of a folder of whole images: one row per tile)
tiles = pd.concat([shards.read_table(p, columns=["image_id", "group"]) for p in inputs.tile_manifests])
tiles = tiles.drop_duplicates("image_id")
groups = tiles.set_index("image_id")["group"]
findings = registration_findings(pairs) if pairs is not None else []
findings += sr_findings(per_image, tiles, params.bootstrap, obj="the object" if pairs is None else "the tile")
gains = tables.gain_table(per_image, groups, params.bootstrap)
saved = {"sr_methods": methods, "sr_gains": gains, "software": tables.software_versions()}
set_aside = [shards.read_table(inputs.tile_rejected)] if inputs.tile_rejected else []
if pairs is not None:
    set_aside.append(tables.rejected_pairs(pairs))
saved["rejected"] = tables.rejected_table(shards.read_table(inputs.quarantined), pd.concat(set_aside or [pd.DataFrame()]))
if pairs is not None:
    saved["registration"] = tables.registration_table(pairs)
    sections = [("Registration of the views across magnifications",
                 "Where each high-magnification view lies in the low-magnification capture of its slide: centre "
                 "(capture pixels), scale of view to capture, rotation (degrees), match score (normalised "
                 "cross-correlation of the registered images) and the share of the view inside the capture. Pairs "
                 "below the score or overlap thresholds are rejected with the reason and never used.",
                 saved["registration"])]
    reference_text = ("Each method against the registered high-magnification view, on the LR/HR tiles of the test "
                      "slides")
    reference_title, whole_title, figure_title = "Super-resolution on registered pairs", "Whole captures", "Slides"
else:
    counts = shards.read_table(inputs.tile_counts[0])
    saved["tiles"] = tables.tile_summary(counts)
    sections = [("Tiles of the whole images",
                 "Per split: images, HR tiles cut from them, tiles kept, tiles dropped by the detail filter as flat "
                 "background, images smaller than a tile (padded) and images that gave no tile (quarantined, with the "
                 "reason, in the table of set-aside inputs).", saved["tiles"])]
    reference_text = ("Each method against the HR tile its LR tile was made from, on the tiles of the held-out (test) "
                      "groups")
    reference_title, whole_title, figure_title = ("Super-resolution with a reference", "Whole images",
                                                  "Held-out images")
    findings.insert(0, f"Tiles: {int(counts['kept'].sum())} of {int(counts['tiles'].sum())} tiles of "
                       f"{len(counts)} images kept, {int(counts['flat'].sum())} dropped as flat background, "
                       f"{int((counts['kept'] == 0).sum())} images without a tile.")
for profile, quality_path, figure, boxes, tile_quality in zip(params.profiles, inputs.quality, inputs.figures,
                                                                snakemake.output.boxplots, inputs.tile_quality):
    quality = shards.read_table(quality_path)
    summary = quality_summary(quality, params.methods)
    changes = tables.quality_changes(quality, params.bootstrap)
    saved[f"whole_quality_{profile}"] = summary
    findings += change_findings(changes, profile)
    figures.no_reference_boxplots({m: quality[quality["method"] == m] for m in summary["method"]}, profile, boxes)
    sections += [
        (f"{reference_title}, {profile}",
         f"{reference_text}: mean ± standard deviation; 'vs bicubic': the difference from bicubic's mean PSNR (dB) "
         f"and SSIM. {tables.BOLD_MEANING}", tables.comparison(methods, profile)),
        (f"Gain over bicubic and Lanczos, {profile}",
         "PSNR gain (dB) of each method over the whole tile and inside the object (from the HR tile, as for "
         "chromosome crops), mean over held-out tiles with a 95 % bootstrap interval that resamples whole groups.",
         gains[gains["profile"] == profile].drop(columns="profile")),
        (f"No-reference quality of the tiles, {profile}", "NIQE and PIQE per method and for the HR tiles; lower is "
         "better. " + NO_REFERENCE_CAVEAT, tile_quality),
        (f"{whole_title} before and after enhancement, {profile}",
         "NIQE (against the pristine model of this run) and PIQE of every held-out whole image at its native size "
         "('capture'; its central crop beyond whole.max_pixels) and after each method enhanced it whole, in "
         "seamless tiles: mean and standard deviation; lower is better. No HR reference exists for these images. "
         + NO_REFERENCE_CAVEAT, summary),
        (f"Change of NIQE and PIQE per method, {profile}",
         "After minus before per image (negative: lower, i.e. better by the score), mean with a 95 % bootstrap "
         "interval over groups.", changes),
        (f"{whole_title}: NIQE and PIQE per method, {profile}", "One box per method over the held-out images.", boxes),
        (f"{figure_title}, {profile}", "Per held-out image: the image, the region with most structure at its "
         "native pixels, before (pixels enlarged) and after each method." if pairs is None else
         "Per test capture: the views found in it, the registration difference, and a region never photographed at "
         "high magnification before and after each method.", figure),
    ]
sections.insert(0, ("Findings", "Generated from the tables below; intervals are bootstrap intervals over groups "
                    "(slides, patients).", findings))
sections += [("Quarantined and rejected inputs", "Every image, tile source or pair that did not go on, with the "
              "reason.", saved["rejected"]),
             ("Software", "Versions this report was made with.", saved["software"])]
for name, table in saved.items():
    tables.save_table(table, out_dir, name)
page.write_report(out_dir, params.report["title"], sections, yaml.safe_dump(dict(snakemake.config), sort_keys=False))
