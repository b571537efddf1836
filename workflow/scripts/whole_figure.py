from karyosr import logs
from karyosr.report import figures

logs.setup(snakemake.log[0])
figures.whole_figure(
    ingest_shards=snakemake.input.ingest,
    pairs_table=snakemake.input.pairs or None,
    enhanced={method: list(snakemake.input[method]) for method in snakemake.params.methods},
    scale=int(snakemake.params.scale),
    out_png=snakemake.output[0],
)
