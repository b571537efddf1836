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
    log:
        "results/logs/report/samples_{profile}.log",
    benchmark:
        "results/benchmarks/report/samples_{profile}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        n_images=config["report"]["sample_images"],
        methods=lambda wc: methods_for(wc.profile),
    script:
        "../scripts/sample_grid.py"


rule plot_quality:
    input:
        sr=lambda wc: [f"results/metrics/{m}/{wc.profile}/{s}.parquet" for m in methods_for(wc.profile) for s in SHARDS],
        hr=expand("results/metrics/HR/{shard}.parquet", shard=SHARDS),
    output:
        png=report(
            "results/report/quality_{profile}.png",
            caption="../report/quality.rst",
            category="No-reference quality",
            subcategory="{profile}",
        ),
        svg="results/report/quality_{profile}.svg",
    log:
        "results/logs/report/quality_{profile}.log",
    benchmark:
        "results/benchmarks/report/quality_{profile}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        methods=lambda wc: methods_for(wc.profile),
    script:
        "../scripts/plot_quality.py"


rule plot_training:
    input:
        [f"results/models/{model}/{profile}/history.parquet" for model in SR_MODELS for profile in SR_PROFILES],
    output:
        png=report("results/report/training_curves.png", caption="../report/training.rst", category="Training"),
        svg="results/report/training_curves.svg",
    log:
        "results/logs/report/training_curves.log",
    benchmark:
        "results/benchmarks/report/training_curves.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/plot_training.py"


rule report:
    input:
        unpack(report_figures),
        unpack(report_classification_inputs),
        summary="results/metrics/summary.parquet",
        ingest="results/ingest/manifest.parquet",
        quarantined="results/ingest/rejected.parquet",
        cropped="results/crop_filter/manifest.parquet",
        rejected="results/crop_filter/rejected.parquet",
        split="results/split/manifest.parquet",
        per_image="results/metrics/per_image.parquet",
    output:
        html=report("results/report/index.html", caption="../report/index.rst", category="Report"),
        markdown="results/report/summary.md",
        classifier_curves="results/report/classifier_curves.png" if EXPERIMENTS else [],
        tables=multiext("results/report/tables/", *[f"{t}.{e}" for t in REPORT_TABLES for e in ("csv", "parquet")]),
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    conda:
        "../envs/report.yaml"
    params:
        report=config["report"],
        profiles=list(PROFILES),
        methods=METHODS + list(SR_MODELS),
        experiments=config["classify"]["experiments"],
        bootstrap=config["classify"]["bootstrap"],
        decoding=CELL_DECODING,
    script:
        "../scripts/report.py"


# The comparison viewer: every test image of every profile, LR, each method and HR side by side.
rule viewer:
    input:
        unpack(viewer_inputs),
        split="results/split/manifest.parquet",
        hr=shard_paths("crop_filter"),
        per_image="results/metrics/per_image.parquet",
        hr_quality="results/metrics/hr_quality.parquet",
    output:
        report("results/report/viewer.html", caption="../report/viewer.rst", category="Report"),
    log:
        "results/logs/report/viewer.log",
    benchmark:
        "results/benchmarks/report/viewer.tsv"
    conda:
        "../envs/core.yaml"
    params:
        profiles=viewer_profiles(),
        title=f"{config['report']['title']}: image viewer",
        max_images=config["report"]["viewer_max_images"],
    script:
        "../scripts/viewer.py"
