from karyosr import logs
from karyosr.dataset import pairs

logs.setup(snakemake.log[0])
pairs.run_paired(
    in_shard=snakemake.input.shard,
    pairs_table=snakemake.input.pairs,
    split_manifest=snakemake.input.split,
    profile_name=snakemake.wildcards.profile,
    profile=snakemake.params.profile,
    out_lr=snakemake.output.lr,
    out_hr=snakemake.output.hr,
)
