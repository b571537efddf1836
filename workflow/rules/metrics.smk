rule metrics:
    input:
        hr="results/crop_filter/shards/{shard}.parquet",
        sr="results/sr/{method}/{profile}/shards/{shard}.parquet",
    output:
        "results/metrics/{method}/{profile}/{shard}.parquet",
    params:
        metrics=config["metrics"],
    log:
        "results/logs/metrics/{method}/{profile}/{shard}.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/metrics.py"


rule aggregate_metrics:
    input:
        [
            f"results/metrics/{method}/{profile}/{shard}.parquet"
            for method, profile in method_profile_pairs()
            for shard in SHARDS
        ],
    output:
        per_image="results/metrics/per_image.parquet",
        summary=report(
            "results/metrics/summary.csv",
            caption="../report/metrics.rst",
            category="Super-resolution",
        ),
        summary_parquet="results/metrics/summary.parquet",
    log:
        "results/logs/aggregate_metrics.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/aggregate_metrics.py"
