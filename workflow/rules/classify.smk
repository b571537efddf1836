# Chromosome classification: inputs per experiment kind, class balancing of the training split,
# training per experiment x seed, prediction on the test split, and the summary tables.


rule classifier_inputs:
    input:
        unpack(classifier_input_sources),
    output:
        intermediate("results/classify/inputs/{input}/shards/{shard}.parquet"),
    log:
        "results/logs/classify/inputs/{input}/{shard}.log",
    benchmark:
        "results/benchmarks/classify/inputs/{input}/{shard}.tsv"
    wildcard_constraints:
        input=r"(lr-[A-Za-z0-9_]+|sr-[A-Za-z0-9_]+-[A-Za-z0-9_]+)",
    conda:
        "../envs/torch.yaml"
    threads: TORCH_JOB_THREADS
    params:
        device=config["classify"]["device"],
    script:
        "../scripts/classifier_inputs.py"


rule balance:
    input:
        shards=lambda wc: classifier_eval_shards(CLASSIFIER_INPUTS[wc.input]),
        split="results/split/manifest.parquet",
    output:
        intermediate("results/classify/balanced/{input}/{method}.parquet"),
    log:
        "results/logs/classify/balance/{input}/{method}.log",
    benchmark:
        "results/benchmarks/classify/balance/{input}/{method}.tsv"
    wildcard_constraints:
        method=r"none|random_oversample|smote",
    conda:
        "../envs/core.yaml"
    params:
        balance={k: config["classify"][k] for k in ("sampling_strategy", "k_neighbors")},
        seed=config["seed"],
    script:
        "../scripts/balance.py"


rule train_classifier:
    input:
        balanced=lambda wc: balanced_set(wc.experiment),
        eval=lambda wc: classifier_eval_shards(EXPERIMENTS[wc.experiment]["input"]),
        split="results/split/manifest.parquet",
        init_from=lambda wc: user_file(EXPERIMENTS[wc.experiment].get("init_from")),
    output:
        model="results/classify/models/{experiment}/seed{seed}/model.safetensors",
        history="results/classify/models/{experiment}/seed{seed}/history.parquet",
    log:
        "results/logs/classify/train/{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/classify/train/{experiment}/seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../envs/torch.yaml"
    threads: TORCH_JOB_THREADS
    resources:
        **GPU_JOB,
        mem_mb=8000,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        experiment=lambda wc: experiment_settings(wc.experiment),
        checkpoint_dir=lambda wc: f"results/checkpoints/classify/{wc.experiment}/seed{wc.seed}",
        # Recorded in the model file's metadata: how images are cropped (and degraded) for it.
        crop=config["crop_filter"],
        profile=lambda wc: experiment_profile(wc.experiment),
    script:
        "../scripts/train_classifier.py"


rule predict:
    input:
        model="results/classify/models/{experiment}/seed{seed}/model.safetensors",
        eval=lambda wc: classifier_eval_shards(EXPERIMENTS[wc.experiment]["input"]),
        split="results/split/manifest.parquet",
    output:
        predictions="results/classify/predictions/{experiment}/seed{seed}.parquet",
        features="results/classify/features/{experiment}/seed{seed}.parquet",
    log:
        "results/logs/classify/predict/{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/classify/predict/{experiment}/seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../envs/torch.yaml"
    threads: TORCH_JOB_THREADS
    params:
        experiment=lambda wc: experiment_settings(wc.experiment),
    script:
        "../scripts/predict.py"


rule classification_summary:
    input:
        predictions=expand(
            "results/classify/predictions/{experiment}/seed{seed}.parquet", experiment=EXPERIMENTS, seed=SEEDS
        ),
        features=expand(
            "results/classify/features/{experiment}/seed{seed}.parquet", experiment=EXPERIMENTS, seed=SEEDS[:1]
        ),
    output:
        predictions="results/classify/summary/predictions.parquet",
        cells="results/classify/summary/cells.parquet",
        runs="results/classify/summary/runs.parquet",
        over_seeds="results/classify/summary/over_seeds.parquet",
        comparisons="results/classify/summary/comparisons.parquet",
        per_class="results/classify/summary/per_class.parquet",
        confusion=expand("results/classify/summary/confusion_{experiment}.parquet", experiment=SUMMARISED),
        confusion_png=expand("results/report/confusion_{experiment}.png", experiment=SUMMARISED),
        tsne=report("results/report/tsne.png", caption="../report/tsne.rst", category="Classification"),
    log:
        "results/logs/classify/summary.log",
    benchmark:
        "results/benchmarks/classify/summary.tsv"
    conda:
        "../envs/report.yaml"
    params:
        experiments=config["classify"]["experiments"],
        ensembles=config["classify"]["ensembles"],
        bootstrap=config["classify"]["bootstrap"],
        decoding=CELL_DECODING,
    script:
        "../scripts/classification_summary.py"
