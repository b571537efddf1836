from karyosr import logs
from karyosr.classify import inputs

logs.setup(snakemake.log[0])
inputs.prepare_shard(
    snakemake.input.lr,
    kind=snakemake.wildcards.input.split("-")[0],
    model_path=snakemake.input.get("model"),
    out_shard=snakemake.output[0],
    device_name=snakemake.params.device,
    threads=snakemake.threads,
)
