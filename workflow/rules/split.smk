rule split:
    input:
        "results/crop_filter/manifest.parquet",
    output:
        report(
            "results/split/manifest.parquet",
            caption="../report/split.rst",
            category="Dataset",
        ),
    params:
        fractions=config["split"]["fractions"],
        seed=config["seed"],
    log:
        "results/logs/split.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/split.py"
