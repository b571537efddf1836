from karyosr import logs
from karyosr.whole import enhance

logs.setup(snakemake.log[0])
enhance.run(
    in_shard=snakemake.input.shard,
    pairs_table=snakemake.input.pairs or None,
    split_manifest=snakemake.input.split,
    method=snakemake.wildcards.method,
    profile_name=snakemake.wildcards.profile,
    profile=snakemake.params.profile,
    infer_cfg=snakemake.params.infer,
    unsharp=snakemake.params.unsharp,
    model_path=snakemake.input.model[0] if snakemake.input.model else None,
    out_shard=snakemake.output[0],
    threads=snakemake.threads,
    max_pixels=snakemake.params.max_pixels,
)
