from karyosr import logs
from karyosr.whole import quality

logs.setup(snakemake.log[0])
quality.run(
    enhanced={method: list(snakemake.input[method]) for method in snakemake.params.methods},
    ingest_shards=snakemake.input.ingest,
    profile_name=snakemake.wildcards.profile,
    pristine_path=snakemake.input.pristine,
    out_table=snakemake.output[0],
)
