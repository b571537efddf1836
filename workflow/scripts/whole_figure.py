from karyosr import logs, slides

logs.setup(snakemake.log[0])
slides.run_slide_figure(
    ingest_shards=snakemake.input.ingest,
    pairs_table=snakemake.input.pairs or None,
    enhanced={method: list(snakemake.input[method]) for method in snakemake.params.methods},
    scale=int(snakemake.params.scale),
    out_png=snakemake.output[0],
)
