from pathlib import Path

import yaml

from karyosr import logs, report, shards

logs.setup(snakemake.log[0])
inputs, out_dir = snakemake.input, Path(snakemake.output.html).parent
ingested = shards.read_table(inputs.ingest)
quarantined = shards.read_table(inputs.quarantined)
cropped = shards.read_table(inputs.cropped)
rejected = shards.read_table(inputs.rejected)
split = shards.read_table(inputs.split)

tables = {
    "sr_methods": report.method_table(shards.read_table(inputs.summary)),
    "stage_counts": report.stage_counts(ingested, quarantined, cropped, rejected, split),
    "class_counts": report.class_counts(split),
    "rejected": report.rejected_table(quarantined, rejected),
    "software": report.software_versions(),
}
for name, table in tables.items():
    report.save_table(table, out_dir, name)

sections = [
    ("Super-resolution: method x degradation profile",
     "PSNR (dB), SSIM and MSE of each method's output against the HR test image, mean and standard "
     "deviation over the test split; gain in PSNR over bicubic interpolation.",
     tables["sr_methods"]),
    *[(f"Sample test images, {profile}",
       "Left to right: the LR input (pixels enlarged), each method's output, the HR image.",
       grid) for profile, grid in zip(snakemake.params.profiles, inputs.grids)],
    ("Images per stage", "What each stage took in, kept and set aside.", tables["stage_counts"]),
    ("Images per class and split", "Counts after cropping and filtering.", tables["class_counts"]),
    ("Quarantined and rejected images", "Every input that did not go on, with the reason.", tables["rejected"]),
    ("Software", "Versions this report was made with.", tables["software"]),
]
report.write_report(out_dir, snakemake.params.report["title"], sections,
                    yaml.safe_dump(snakemake.params.config, sort_keys=False))
