from karyosr import logs
from karyosr.dataset import degrade

logs.setup(snakemake.log[0])
degrade.run(
    in_shard=snakemake.input.shard,
    split_manifest=snakemake.input.split,
    profile_name=snakemake.wildcards.profile,
    profile=snakemake.params.profile,
    seed=snakemake.params.seed,
    out_shard=snakemake.output[0],
)
