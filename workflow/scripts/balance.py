from karyosr import logs
from karyosr.classify import train as classify

logs.setup(snakemake.log[0])
classify.run_balance(
    snakemake.input.shards,
    snakemake.input.split,
    snakemake.wildcards.method,
    snakemake.params.balance,
    snakemake.params.seed,
    snakemake.output[0],
)
