rule crop_filter:
    input:
        "results/ingest/shards/{shard}.parquet",
    output:
        shard="results/crop_filter/shards/{shard}.parquet",
        rejected="results/crop_filter/rejected/{shard}.parquet",
    log:
        "results/logs/crop_filter/{shard}.log",
    benchmark:
        "results/benchmarks/crop_filter/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=lambda wc, input: max(4 * input.size_mb, 1000),
    params:
        crop_filter=config["crop_filter"],
    script:
        "../scripts/crop_filter.py"
