# Magnification series: every (low, high magnification) pair of a slide registered, the accepted
# pairs cut into LR/HR tiles that form the paired degradation profiles (karyosr.dataset.pairs).


rule register:
    input:
        # A magnification series is sharded by slide: every capture of a slide is in one shard.
        "results/ingest/shards/{shard}.parquet",
    output:
        "results/register/shards/{shard}.parquet",
    log:
        "results/logs/register/{shard}.log",
    benchmark:
        "results/benchmarks/register/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=lambda wc, input: max(6 * input.size_mb, 1000),
    params:
        register=config["register"],
    script:
        "../scripts/register.py"


# Every registered pair (accepted and rejected, with the reason) and the rejected ones alone.
rule pairs_manifest:
    input:
        expand("results/register/shards/{shard}.parquet", shard=SHARDS),
    output:
        pairs="results/register/pairs.parquet",
        rejected="results/register/rejected.parquet",
    log:
        "results/logs/register/pairs_manifest.log",
    benchmark:
        "results/benchmarks/register/pairs_manifest.tsv"
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/pairs_manifest.py"


rule paired:
    input:
        shard="results/ingest/shards/{shard}.parquet",
        pairs="results/register/shards/{shard}.parquet",
        split="results/split/manifest.parquet",
    output:
        lr="results/degrade/{profile}/shards/{shard}.parquet",
        hr="results/paired/{profile}/hr/shards/{shard}.parquet",
    log:
        "results/logs/paired/{profile}/{shard}.log",
    benchmark:
        "results/benchmarks/paired/{profile}/{shard}.tsv"
    wildcard_constraints:
        profile="|".join(PAIRED) or "no-paired-profiles",
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=lambda wc, input: max(6 * input.size_mb, 1000),
    params:
        profile=lambda wc: PROFILES[wc.profile],
    script:
        "../scripts/paired.py"
