# Whole images: every method of a profile applied to the held-out whole images (layout images:
# the original photos, fields or slices of the test groups) or to the whole low-magnification
# captures of the test slides (magnification series, paired profiles) in seamless tiles
# (karyosr.whole.enhance), their no-reference quality before and after (karyosr.whole.quality),
# and the report of the whole-image path (karyosr.report).


rule enhance_whole:
    input:
        shard="results/ingest/shards/{shard}.parquet",
        pairs=REGISTERED_PAIRS,
        split="results/split/manifest.parquet",
        model=lambda wc: (
            [f"results/models/{wc.method}/{wc.profile}/model.safetensors"] if wc.method in SR_MODELS else []
        ),
    output:
        intermediate("results/whole/{method}/{profile}/shards/{shard}.parquet"),
    log:
        "results/logs/whole/{method}/{profile}/{shard}.log",
    benchmark:
        "results/benchmarks/whole/{method}/{profile}/{shard}.tsv"
    wildcard_constraints:
        profile="|".join(WHOLE_PROFILES) or "no-whole-image-profiles",
    conda:
        "../envs/torch.yaml"
    threads: TORCH_JOB_THREADS
    resources:
        mem_mb=lambda wc, input: max(40 * input.size_mb, 2000),
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        profile=lambda wc: PROFILES[wc.profile],
        # Only what the method reads: a baseline does not rerun when an SR setting changes.
        infer=lambda wc: SR_SETTINGS if wc.method in SR_MODELS else {},
        unsharp=lambda wc: config["upscale"]["unsharp"] if wc.method == "unsharp" else {},
        max_pixels=config["whole"]["max_pixels"],
    script:
        "../scripts/enhance_whole.py"


rule whole_quality:
    input:
        unpack(whole_quality_inputs),
        ingest=expand("results/ingest/shards/{shard}.parquet", shard=SHARDS),
        pristine="results/metrics/niqe_pristine.npz",
    output:
        "results/whole/{profile}/quality.parquet",
    log:
        "results/logs/whole/{profile}/quality.log",
    benchmark:
        "results/benchmarks/whole/{profile}/quality.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=ENHANCED_IMAGE_MB,
    params:
        methods=lambda wc: methods_for(wc.profile),
    script:
        "../scripts/whole_quality.py"


rule whole_figure:
    input:
        unpack(whole_quality_inputs),
        ingest=expand("results/ingest/shards/{shard}.parquet", shard=SHARDS),
        pairs=REGISTERED_PAIRS,
    output:
        report(
            "results/report/whole_figure_{profile}.png",
            caption="../report/whole_figure.rst",
            category="Whole images",
            subcategory="{profile}",
        ),
    log:
        "results/logs/report/whole_figure_{profile}.log",
    benchmark:
        "results/benchmarks/report/whole_figure_{profile}.tsv"
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=ENHANCED_IMAGE_MB,
    params:
        methods=lambda wc: methods_for(wc.profile),
        scale=lambda wc: PROFILES[wc.profile]["scale"],
    script:
        "../scripts/whole_figure.py"


rule whole_report:
    input:
        pairs=REGISTERED_PAIRS,
        tile_counts=["results/tiles/images.parquet"] if TILED else [],
        tile_rejected=["results/tiles/rejected.parquet"] if TILED else [],
        ingest="results/ingest/manifest.parquet",
        quarantined="results/ingest/rejected.parquet",
        summary="results/metrics/summary.parquet",
        per_image="results/metrics/per_image.parquet",
        tile_manifests=expand("results/degrade/{profile}/manifest.parquet", profile=WHOLE_PROFILES),
        quality=expand("results/whole/{profile}/quality.parquet", profile=WHOLE_PROFILES),
        figures=expand("results/report/whole_figure_{profile}.png", profile=WHOLE_PROFILES),
        tile_quality=expand("results/report/quality_{profile}.png", profile=WHOLE_PROFILES),
    output:
        html=report("results/report/index.html", caption="../report/index.rst", category="Report"),
        markdown="results/report/summary.md",
        boxplots=expand("results/report/whole_quality_{profile}.png", profile=WHOLE_PROFILES),
        tables=multiext(
            "results/report/tables/",
            *[
                f"{t}.{e}"
                for t in ["tiles" if TILED else "registration", "sr_methods", "sr_gains", "rejected", "software"]
                + [f"whole_quality_{p}" for p in WHOLE_PROFILES]
                for e in ("csv", "parquet")
            ],
        ),
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    conda:
        "../envs/report.yaml"
    params:
        report=config["report"],
        profiles=WHOLE_PROFILES,
        methods=METHODS + list(SR_MODELS),
        bootstrap=config["classify"]["bootstrap"],
    script:
        "../scripts/whole_report.py"


# One report per run at results/report/index.html: this one for whole images, `report` otherwise.
if WHOLE_IMAGES:

    ruleorder: whole_report > report

else:

    ruleorder: report > whole_report
