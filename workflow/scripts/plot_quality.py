from karyosr import logs, report, shards

logs.setup(snakemake.log[0])
report.quality_boxplots(
    shards.read_table(snakemake.input.per_image),
    shards.read_table(snakemake.input.hr_quality),
    snakemake.wildcards.profile,
    snakemake.params.methods,
    snakemake.output.png,
    snakemake.output.svg,
)
