# Opt-in (export.images): the test split's LR, SR and HR images as PNG (8-bit) or TIFF (16-bit)
# files named by image_id, for Fiji/ImageJ. One folder per profile and method.
rule export_images:
    input:
        shards=export_sources,
        split="results/split/manifest.parquet",
    output:
        directory("results/export/{profile}/{method}"),
    log:
        "results/logs/export/{profile}/{method}.log",
    benchmark:
        "results/benchmarks/export/{profile}/{method}.tsv"
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/export_images.py"
