# Lists the raw dataset once: files, labels, groups, shard of each image_id.
rule inventory:
    input:
        raw_root(),
    output:
        "results/ingest/inventory.parquet",
    log:
        "results/logs/ingest/inventory.log",
    benchmark:
        "results/benchmarks/ingest/inventory.tsv"
    conda:
        "../envs/core.yaml"
    params:
        dataset=DATASET,
        layout=config["dataset"]["layout"],
        n_shards=config["shards"],
    script:
        "../scripts/inventory.py"


rule ingest:
    input:
        raw=raw_root(),
        inventory="results/ingest/inventory.parquet",
    output:
        shard=intermediate("results/ingest/shards/{shard}.parquet"),
        rejected="results/ingest/rejected/{shard}.parquet",
    log:
        "results/logs/ingest/{shard}.log",
    benchmark:
        "results/benchmarks/ingest/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        # The raw files are not a declared input (the folder is), so memory cannot follow input size:
        # the largest image ingest admits, decoded in colour and as grey, and the shard's images.
        mem_mb=max(2000, 2 * IMAGE_MB),
    params:
        layout=config["dataset"]["layout"],
        max_pixels=config["ingest"]["max_pixels"],
        n_shards=config["shards"],
    script:
        "../scripts/ingest.py"


# Gathers the pixel-free columns of every shard of one stage output into its manifest.
rule manifest:
    input:
        lambda wc: shard_paths(wc.output),
    output:
        "results/{output}/manifest.parquet",
    log:
        "results/logs/manifest/{output}.log",
    wildcard_constraints:
        output=r"ingest|crop_filter|tiles|degrade/[A-Za-z0-9_]+|paired/[A-Za-z0-9_]+/hr|sr/[A-Za-z0-9_]+/[A-Za-z0-9_]+",
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/manifest.py"


rule rejected:
    input:
        expand("results/{{stage}}/rejected/{shard}.parquet", shard=SHARDS),
    output:
        "results/{stage}/rejected.parquet",
    log:
        "results/logs/rejected/{stage}.log",
    wildcard_constraints:
        stage=r"ingest|crop_filter|tiles",
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/concat_tables.py"
