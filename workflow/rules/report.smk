rule sample_grid:
    input:
        split="results/split/manifest.parquet",
        hr=shard_paths("crop_filter"),
        lr=lambda wc: shard_paths(f"degrade/{wc.profile}"),
        sr=lambda wc: [path for method in methods_for(wc.profile) for path in shard_paths(f"sr/{method}/{wc.profile}")],
    output:
        report(
            "results/report/samples_{profile}.png",
            caption="../report/samples.rst",
            category="Super-resolution",
            subcategory="{profile}",
        ),
    params:
        n_images=config["report"]["sample_images"],
        methods=lambda wc: methods_for(wc.profile),
    log:
        "results/logs/report/samples_{profile}.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/sample_grid.py"


rule report:
    input:
        summary="results/metrics/summary.parquet",
        ingest="results/ingest/manifest.parquet",
        quarantined="results/ingest/rejected.parquet",
        cropped="results/crop_filter/manifest.parquet",
        rejected="results/crop_filter/rejected.parquet",
        split="results/split/manifest.parquet",
        grids=expand("results/report/samples_{profile}.png", profile=PROFILES),
    output:
        html=report("results/report/index.html", caption="../report/index.rst", category="Report"),
        markdown="results/report/summary.md",
        tables=multiext("results/report/tables/", *[f"{t}.{e}" for t in REPORT_TABLES for e in ("csv", "parquet")]),
    params:
        report=config["report"],
        profiles=list(PROFILES),
        config=config,
    log:
        "results/logs/report/report.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report.py"
