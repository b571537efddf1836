from pathlib import Path

import yaml

from karyosr import logs
from karyosr.classify import metrics
from karyosr.io import shards
from karyosr.labels import N_CLASSES
from karyosr.report import figures, page, tables
from karyosr.report.findings import classification_findings, sr_findings

logs.setup(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
out_dir = Path(snakemake.output.html).parent
ingested = shards.read_table(inputs.ingest)
quarantined = shards.read_table(inputs.quarantined)
cropped = shards.read_table(inputs.cropped)
rejected = shards.read_table(inputs.rejected)
split = shards.read_table(inputs.split)
methods = tables.method_table(shards.read_table(inputs.summary), params.methods)

saved = {
    "sr_methods": methods,
    "stage_counts": tables.stage_counts(ingested, quarantined, cropped, rejected, split),
    "class_counts": tables.class_counts(split),
    "rejected": tables.rejected_table(quarantined, rejected),
    "software": tables.software_versions(),
}
for name, table in saved.items():
    tables.save_table(table, out_dir, name)

filter_columns = [c for c in tables.COMPARISON_COLUMNS if c[0] in ("mse_mean", "mse_fg_mean", "psnr_fg_mean")]
sections = []
for profile, grid, quality in zip(params.profiles, inputs.grids, inputs.quality):
    sections += [
        (f"Interpolation vs super-resolution, {profile}",
         "Mean ± standard deviation over the test images; 'fg' = inside the chromosome mask (the HR "
         "foreground, dilated), where whole-image figures are inflated by uniform background; 'vs bicubic': "
         f"the difference from bicubic's mean PSNR (dB) and SSIM. {tables.BOLD_MEANING}",
         tables.comparison(methods, profile)),
        (f"MSE: filter sharpening vs learned sharpening, {profile}",
         "Mean squared error against HR of the bicubic image, the unsharp-mask filter applied to it, and "
         "every learned method; bold: the best of each column (the highest PSNR, the lowest MSE; ties included).",
         tables.comparison(methods, profile, filter_columns)),
        (f"No-reference quality before and after enhancement, {profile}",
         "NIQE and PIQE per method and for the HR images; lower is better.", quality),
        (f"Sample test images, {profile}",
         "Left to right: the LR input (pixels enlarged), each method's output, the HR image; insets "
         "zoom 2x into the centre.", grid),
    ]
if inputs.training:
    sections.append(("Training curves", "Training loss and validation PSNR per epoch; dots mark the epochs kept.",
                     inputs.training[0]))
findings = sr_findings(shards.read_table(inputs.per_image), split, params.bootstrap)
if inputs.classification:
    over_seeds = shards.read_table(inputs.classification[0])
    per_class = shards.read_table(inputs.per_class[0])
    comparisons = shards.read_table(inputs.comparisons[0])
    cells = shards.read_table(inputs.cells[0])
    decoding = params.decoding
    if decoding["cell_decoding"]:
        over_seeds = tables.with_sex_calls(over_seeds, metrics.sex_call_summary(cells))
    flagged = tables.flagged_cells_table(cells)
    for name, table in (("classification", over_seeds), ("per_class", per_class), ("comparisons", comparisons),
                        ("flagged_cells", flagged)):
        tables.save_table(table, out_dir, name)
    findings += classification_findings(comparisons, over_seeds, cells)
    # Every experiment of a run classifies crop_filter's images, cut to the chromosome or not.
    networks, ablation = tables.classification_tables(
        over_seeds.assign(adaptive_crop=tables.adaptive_crop_applied(cropped)))
    intervals = "; ".join(over_seeds["interval"].unique())
    decoded_text = (" and after cell decoding (each cell's chromosomes labelled jointly as two of each autosome and "
                    "XX or XY)" if decoding["cell_decoding"] else "")
    sex_text = (" 'Decoded sex correct': the sex decoding called against the one the cell's true labels show (a Y, "
                "or two X; cells showing neither are left out), every seed's call counted; 'undetermined': XX or "
                "XY." if decoding["cell_decoding"] else "")
    flagged_sections = [(
        "Classification: flagged cells",
        "Test cells that may be numerically abnormal, which decoding must not silently correct: more than 46 "
        "chromosomes" + (", or fewer (every chromosome of a cell was imaged: classify.complete_cells)"
                         if decoding["complete_cells"] else "")
        + f", or a labelling with an extra copy of a class at least {decoding['flag_likelihood_ratio']:g} times "
        "likelier than a normal karyotype. Both labels of every image are in "
        "results/classify/summary/predictions.parquet." + ("" if len(flagged) else " No cell was flagged."),
        flagged if len(flagged) else None)] if decoding["cell_decoding"] else []
    histories = {Path(p).parent.parent.name + " " + Path(p).parent.name: shards.read_table(p)
                 for p in inputs.class_histories}
    figures.training_curves(histories, snakemake.output.classifier_curves, metric="val_accuracy",
                            metric_title="validation accuracy")
    sections += [
        ("Classification: networks and inputs",
         f"Test accuracy of the independent predictions{decoded_text}, macro-F1 over the {N_CLASSES} classes and "
         f"the accuracy on the sex chromosomes X and Y, the minority classes: mean over seeds and [interval] "
         f"({intervals}: a resample draws whole test cells and the seeds, so it holds both the test set's and the "
         "training runs' variation). X and Y: (test images classified right / test images of the class), the "
         "right ones averaged over seeds. Chance, guessing one of the "
         f"{N_CLASSES} classes: 1/{N_CLASSES} = {100 / N_CLASSES:.1f} %.{sex_text} Bold: the best mean of a column "
         "and any that ties with it as shown, none where all tie; whether two experiments are told apart is in "
         "their comparisons (Findings, tables/comparisons.csv).", networks),
        ("Classification: ablation",
         "Backbone; + SMOTE (training split balanced); + SR (two-stage sr: or end-to-end super: input); "
         "+ IAM (the image adaptive crop, crop_filter.adaptive_crop; one setting per run). Test accuracy with its "
         "interval as above; bold as above.", ablation),
        ("Classification: per class", "Test accuracy per chromosome class and experiment, all seeds pooled, "
         "with (test images classified right, averaged over seeds / test images of the class) and its interval "
         f"over test cells and seeds, shaded by accuracy{'; then after cell decoding' if decoded_text else ''}. "
         "The class column gives its test images; precision and F1 are in tables/per_class.csv.",
         tables.per_class_heatmap(per_class)),
        *flagged_sections,
        *[(f"Confusion matrix, {Path(p).stem.removeprefix('confusion_')}", "Rows: true class; share of each "
           "true class per predicted class.", p) for p in inputs.confusion],
        ("Features of the test images (t-SNE)", "Penultimate-layer features, one colour per class.",
         inputs.tsne[0]),
        ("Classifier training curves", "Training cross-entropy and validation accuracy per epoch.",
         snakemake.output.classifier_curves),
    ]
sections.insert(0, ("Findings", "Generated from the tables below; intervals are bootstrap intervals over test "
                    "cells (and seeds, for classification).",
                    findings or ["No comparison could be made from this run's tables."]))
sections += [
    ("Images per stage", "What each stage took in, kept and set aside.", saved["stage_counts"]),
    ("Images per class and split", "Counts after cropping and filtering.", saved["class_counts"]),
    ("Quarantined and rejected images", "Every input that did not go on, with the reason.", saved["rejected"]),
    ("Software", "Versions this report was made with.", saved["software"]),
]
# The whole configuration is shown for provenance but is not a param: a key that changes none of
# the report's inputs or its own slice must not rerun it (the page then shows the configuration of
# the run that made it, whose results are the same).
page.write_report(out_dir, params.report["title"], sections, yaml.safe_dump(dict(snakemake.config), sort_keys=False),
                  links=[("Comparison viewer: every test image, method by method", "viewer.html")])
