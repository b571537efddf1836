rule fetch:
    output:
        directory(f"results/raw/{DATASET}"),
    params:
        source=config["dataset"]["source"],
        synthetic=config["synthetic"] if config["dataset"]["source"]["type"] == "synthetic" else None,
        seed=config["seed"],
    log:
        "results/logs/fetch.log",
    benchmark:
        "results/benchmarks/fetch.tsv"
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/fetch.py"
