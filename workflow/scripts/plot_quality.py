from karyosr import logs, report, shards

logs.setup(snakemake.log[0])
report.quality_boxplots(
    shards.concat_tables(snakemake.input.sr),
    shards.concat_tables(snakemake.input.hr),
    snakemake.wildcards.profile,
    snakemake.params.methods,
    snakemake.output.png,
    snakemake.output.svg,
)
