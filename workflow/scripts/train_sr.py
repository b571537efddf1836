from karyosr import logs
from karyosr.sr import train

logs.setup(snakemake.log[0])
train.run(
    hr_shards=snakemake.input.hr,
    lr_shards=snakemake.input.lr,
    model_cfg=snakemake.params.model,
    seed=snakemake.params.seed,
    out_model=snakemake.output.model,
    out_history=snakemake.output.history,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    features_model=snakemake.input.get("features"),
    init_from_model=snakemake.input.get("init_from_model"),
    threads=snakemake.threads,
    profile=snakemake.params.profile,
    crop=snakemake.params.crop,
)
