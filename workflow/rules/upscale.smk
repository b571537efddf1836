# Interpolation baselines: the "SR methods" every learned model is compared with.
rule upscale:
    input:
        "results/degrade/{profile}/shards/{shard}.parquet",
    output:
        "results/sr/{method}/{profile}/shards/{shard}.parquet",
    wildcard_constraints:
        method=r"nearest|bilinear|bicubic|lanczos",
    log:
        "results/logs/sr/{method}/{profile}/{shard}.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/upscale.py"
