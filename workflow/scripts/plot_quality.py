from karyosr import logs
from karyosr.io import shards
from karyosr.report import figures

logs.setup(snakemake.log[0])
figures.quality_boxplots(
    shards.concat_tables(snakemake.input.sr),
    shards.concat_tables(snakemake.input.hr),
    snakemake.wildcards.profile,
    snakemake.params.methods,
    snakemake.output.png,
    snakemake.output.svg,
)
