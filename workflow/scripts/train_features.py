from karyosr import logs
from karyosr.sr import features

logs.setup(snakemake.log[0])
features.run(
    hr_shards=snakemake.input.hr,
    split_manifest=snakemake.input.split,
    cfg=snakemake.params.features,
    seed=snakemake.params.seed,
    out_model=snakemake.output[0],
    checkpoint_dir=snakemake.params.checkpoint_dir,
    threads=snakemake.threads,
    crop=snakemake.params.crop,
)
