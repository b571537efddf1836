from karyosr import logs
from karyosr.classify import balance

logs.setup(snakemake.log[0])
balance.run_balance(
    snakemake.input.shards,
    snakemake.input.split,
    snakemake.wildcards.method,
    snakemake.params.balance,
    snakemake.params.seed,
    snakemake.output[0],
)
