from pathlib import Path

import pandas as pd
import yaml

from karyosr import logs, slides
from karyosr.io import shards
from karyosr.report import figures, page, tables
from karyosr.report.findings import sr_findings

logs.setup(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
out_dir = Path(snakemake.output.html).parent
pairs = shards.read_table(inputs.pairs)
methods = tables.method_table(shards.read_table(inputs.summary), params.methods)
# Tiles of one slide share its staining and optics: the bootstrap resamples slides.
tiles = pd.concat([shards.read_table(p, columns=["image_id", "group"]) for p in inputs.tile_manifests])
findings = slides.registration_findings(pairs)
findings += sr_findings(shards.read_table(inputs.per_image), tiles, params.bootstrap)
saved = {"registration": slides.registration_table(pairs), "sr_methods": methods,
         "rejected": tables.rejected_table(shards.read_table(inputs.quarantined), slides.rejected_pairs(pairs)),
         "software": tables.software_versions()}
sections = [("Registration of the views across magnifications",
             "Where each high-magnification view lies in the low-magnification capture of its slide: centre (capture "
             "pixels), scale of view to capture, rotation (degrees), match score (normalised cross-correlation of the "
             "registered images) and the share of the view inside the capture. Pairs below the score or overlap "
             "thresholds are rejected with the reason and never used.", saved["registration"])]
for profile, quality_path, figure, boxes, tile_quality in zip(params.profiles, inputs.quality, inputs.figures,
                                                                snakemake.output.boxplots, inputs.tile_quality):
    quality = shards.read_table(quality_path)
    summary = slides.quality_summary(quality, params.methods)
    saved[f"whole_quality_{profile}"] = summary
    findings += slides.quality_findings(summary, profile)
    figures.no_reference_boxplots({m: quality[quality["method"] == m] for m in summary["method"]}, profile, boxes)
    sections += [
        (f"Super-resolution on registered pairs, {profile}",
         "Each method against the registered high-magnification view, on the LR/HR tiles of the test slides: mean ± "
         "standard deviation; % change of PSNR and SSIM over bicubic. Best value of each column in bold.",
         tables.comparison(methods, profile)),
        (f"No-reference quality of the registered tiles, {profile}", "NIQE and PIQE per method and for the HR "
         "views; lower is better.", tile_quality),
        (f"Whole captures before and after enhancement, {profile}",
         "NIQE (against the pristine model of this run) and PIQE of every low-magnification test capture at its "
         "native size ('capture') and after each method enlarged it whole, in seamless tiles: mean and standard "
         "deviation; lower is better. No HR reference exists for most of a capture.", summary),
        (f"Whole captures: NIQE and PIQE per method, {profile}", "One box per method over the test captures.", boxes),
        (f"Slides, {profile}", "Per test capture: the views found in it, the registration difference, and a region "
         "never photographed at high magnification before and after each method.", figure),
    ]
sections.insert(0, ("Findings", "Generated from the tables below; intervals are bootstrap intervals over slides.",
                    findings))
sections += [("Quarantined and rejected inputs", "Every capture or pair that did not go on, with the reason.",
              saved["rejected"]),
             ("Software", "Versions this report was made with.", saved["software"])]
for name, table in saved.items():
    tables.save_table(table, out_dir, name)
page.write_report(out_dir, params.report["title"], sections, yaml.safe_dump(dict(snakemake.config), sort_keys=False))
