rule degrade:
    input:
        shard=lambda wc: f"results/{hr_stage(wc.profile)}/shards/{wc.shard}.parquet",
        split="results/split/manifest.parquet",
    output:
        intermediate("results/degrade/{profile}/shards/{shard}.parquet"),
    log:
        "results/logs/degrade/{profile}/{shard}.log",
    benchmark:
        "results/benchmarks/degrade/{profile}/{shard}.tsv"
    wildcard_constraints:
        # Paired profiles come from the paired rule (workflow/rules/register.smk).
        profile="|".join(SYNTHETIC_PROFILES) or "no-synthetic-profiles",
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=lambda wc, input: max(4 * input.size_mb, 1000),
    params:
        profile=lambda wc: PROFILES[wc.profile],
        seed=config["seed"],
    script:
        "../scripts/degrade.py"
