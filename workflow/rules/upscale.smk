# Interpolation baselines: the "SR methods" every learned model is compared with.
rule upscale:
    input:
        "results/degrade/{profile}/shards/{shard}.parquet",
    output:
        intermediate("results/sr/{method}/{profile}/shards/{shard}.parquet"),
    log:
        "results/logs/sr/{method}/{profile}/{shard}.log",
    benchmark:
        "results/benchmarks/sr/{method}/{profile}/{shard}.tsv"
    wildcard_constraints:
        method=r"nearest|bilinear|bicubic|lanczos|unsharp",
    conda:
        "../envs/core.yaml"
    params:
        unsharp=lambda wc: config["upscale"]["unsharp"] if wc.method == "unsharp" else None,
    script:
        "../scripts/upscale.py"
