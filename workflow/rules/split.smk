rule split:
    input:
        # Whole images are split by their group (the slide) straight after ingest.
        "results/ingest/manifest.parquet" if WHOLE_IMAGES else "results/crop_filter/manifest.parquet",
    output:
        report(
            "results/split/manifest.parquet",
            caption="../report/split.rst",
            category="Dataset",
        ),
    log:
        "results/logs/split.log",
    benchmark:
        "results/benchmarks/split.tsv"
    conda:
        "../envs/core.yaml"
    params:
        fractions=config["split"]["fractions"],
        seed=config["seed"],
        # Whole images cut into tiles: with too few groups, validation tiles of training images.
        tiled=TILED,
    script:
        "../scripts/split.py"
