rule fetch:
    output:
        directory(f"results/raw/{DATASET}"),
    log:
        "results/logs/fetch.log",
    benchmark:
        "results/benchmarks/fetch.tsv"
    conda:
        "../envs/core.yaml"
    params:
        source=config["dataset"]["source"],
        # The generator's own config slice: synthetic (karyotypes), spreads (metaphase series) or photos.
        synthetic={"synthetic": config["synthetic"], "metaphase": config["spreads"], "photos": config["photos"]}.get(
            config["dataset"]["source"]["type"]
        ),
        seed=config["seed"],
    script:
        "../scripts/fetch.py"
