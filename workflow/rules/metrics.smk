rule fit_niqe:
    input:
        hr=shard_paths(quality_stage()),
        split=quality_split(),
        external_model=user_file(config["metrics"]["niqe_params_file"]),
    output:
        "results/metrics/niqe_pristine.npz",
    log:
        "results/logs/fit_niqe.log",
    benchmark:
        "results/benchmarks/fit_niqe.tsv"
    conda:
        "../envs/core.yaml"
    params:
        metrics=config["metrics"],
    script:
        "../scripts/fit_niqe.py"


rule metrics:
    input:
        hr=lambda wc: f"results/{hr_stage(wc.profile)}/shards/{wc.shard}.parquet",
        sr="results/sr/{method}/{profile}/shards/{shard}.parquet",
        pristine="results/metrics/niqe_pristine.npz",
    output:
        "results/metrics/{method}/{profile}/{shard}.parquet",
    log:
        "results/logs/metrics/{method}/{profile}/{shard}.log",
    benchmark:
        "results/benchmarks/metrics/{method}/{profile}/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    params:
        metrics=config["metrics"],
    script:
        "../scripts/metrics.py"


rule hr_quality:
    input:
        hr=f"results/{quality_stage()}/shards/{{shard}}.parquet",
        split=quality_split(),
        pristine="results/metrics/niqe_pristine.npz",
    output:
        "results/metrics/HR/{shard}.parquet",
    log:
        "results/logs/metrics/HR/{shard}.log",
    benchmark:
        "results/benchmarks/metrics/HR/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    params:
        metrics=config["metrics"],
    script:
        "../scripts/hr_quality.py"


rule aggregate_metrics:
    input:
        sr=[
            f"results/metrics/{method}/{profile}/{shard}.parquet"
            for method, profile in method_profile_pairs()
            for shard in SHARDS
        ],
        hr=expand("results/metrics/HR/{shard}.parquet", shard=SHARDS),
    output:
        per_image="results/metrics/per_image.parquet",
        hr_quality="results/metrics/hr_quality.parquet",
        summary=report(
            "results/metrics/summary.csv",
            caption="../report/metrics.rst",
            category="Super-resolution",
        ),
        summary_parquet="results/metrics/summary.parquet",
    log:
        "results/logs/aggregate_metrics.log",
    benchmark:
        "results/benchmarks/aggregate_metrics.tsv"
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/aggregate_metrics.py"
