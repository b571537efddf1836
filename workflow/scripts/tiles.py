from karyosr import logs
from karyosr.dataset import tiles

logs.setup(snakemake.log[0])
tiles.run(
    in_shard=snakemake.input.shard,
    split_manifest=snakemake.input.split,
    params=snakemake.params.tiles,
    out_shard=snakemake.output.shard,
    out_images=snakemake.output.images,
    out_rejected=snakemake.output.rejected,
)
