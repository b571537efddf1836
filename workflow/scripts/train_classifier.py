from karyosr import logs
from karyosr.classify import train

logs.setup(snakemake.log[0])
train.run_train(
    balanced=snakemake.input.balanced,
    eval_shards=snakemake.input.eval,
    split_manifest=snakemake.input.split,
    experiment=snakemake.params.experiment,
    seed=int(snakemake.wildcards.seed),
    out_model=snakemake.output.model,
    out_history=snakemake.output.history,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    threads=snakemake.threads,
    crop=snakemake.params.crop,
    profile=snakemake.params.profile,
)
