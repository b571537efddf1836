from karyosr import logs
from karyosr.dataset import ingest

logs.setup(snakemake.log[0])
ingest.run(
    root=snakemake.input.raw,
    inventory=snakemake.input.inventory,
    layout=snakemake.params.layout,
    shard=int(snakemake.wildcards.shard),
    n_shards=snakemake.params.n_shards,
    max_pixels=snakemake.params.max_pixels,
    out_shard=snakemake.output.shard,
    out_rejected=snakemake.output.rejected,
)
