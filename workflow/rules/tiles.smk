# Whole images (layout images) cut into HR tiles with the detail filter: the HR images of every
# synthetic degradation profile, as crop_filter's squares are for single chromosomes
# (karyosr.dataset.tiles).


rule tiles:
    input:
        shard="results/ingest/shards/{shard}.parquet",
        split="results/split/manifest.parquet",
    output:
        shard=intermediate("results/tiles/shards/{shard}.parquet"),
        images="results/tiles/images/{shard}.parquet",
        rejected="results/tiles/rejected/{shard}.parquet",
    log:
        "results/logs/tiles/{shard}.log",
    benchmark:
        "results/benchmarks/tiles/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        # Images are read one at a time: the largest image ingest admits, its tiles and the
        # shard's kept tiles (no more than its images).
        mem_mb=lambda wc, input: max(1000, 3 * input.size_mb + IMAGE_MB),
    params:
        tiles=config["tiles"],
    script:
        "../scripts/tiles.py"


# Per image: tiles cut, kept, dropped as flat, padding, and why an image gave none.
rule tile_counts:
    input:
        expand("results/tiles/images/{shard}.parquet", shard=SHARDS),
    output:
        "results/tiles/images.parquet",
    log:
        "results/logs/tiles/images.log",
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/concat_tables.py"
