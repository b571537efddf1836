from karyosr import logs
from karyosr.sr import infer

logs.setup(snakemake.log[0])
infer.run(
    lr_shard=snakemake.input.lr,
    model_path=snakemake.input.model,
    method=snakemake.wildcards.model,
    infer_cfg=snakemake.params.settings,
    out_shard=snakemake.output[0],
    threads=snakemake.threads,
)
