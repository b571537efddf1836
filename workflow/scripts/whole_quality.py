from karyosr import logs, slides

logs.setup(snakemake.log[0])
slides.run_whole_quality(
    enhanced={method: list(snakemake.input[method]) for method in snakemake.params.methods},
    ingest_shards=snakemake.input.ingest,
    profile_name=snakemake.wildcards.profile,
    pristine_path=snakemake.input.pristine,
    out_table=snakemake.output[0],
)
