from karyosr import logs, metrics

logs.setup(snakemake.log[0])
metrics.run(
    snakemake.input.hr, snakemake.input.sr, snakemake.params.metrics, snakemake.input.pristine, snakemake.output[0]
)
