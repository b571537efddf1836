# Learned super-resolution: the perceptual feature network, training per model x profile, and
# inference over the test split with the same output contract as the interpolation baselines.


rule train_features:
    input:
        hr=shard_paths("crop_filter"),
        split="results/split/manifest.parquet",
    output:
        "results/models/features/model.safetensors",
    log:
        "results/logs/train_features.log",
    benchmark:
        "results/benchmarks/train_features.tsv"
    conda:
        "../envs/torch.yaml"
    threads: TORCH_JOB_THREADS
    resources:
        **GPU_JOB,
        mem_mb=8000,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        features={**config["sr"]["features"], "device": config["sr"]["device"]},
        seed=config["seed"],
        checkpoint_dir="results/checkpoints/features",
        crop=config["crop_filter"],
    script:
        "../scripts/train_features.py"


rule train_sr:
    input:
        unpack(train_sr_inputs),
    output:
        model="results/models/{model}/{profile}/model.safetensors",
        history=report(
            "results/models/{model}/{profile}/history.parquet",
            caption="../report/history.rst",
            category="Training",
            subcategory="{model}",
        ),
    log:
        "results/logs/train_sr/{model}/{profile}.log",
    benchmark:
        "results/benchmarks/train_sr/{model}/{profile}.tsv"
    wildcard_constraints:
        model="|".join(SR_MODELS) or "no-learned-models",
    conda:
        "../envs/torch.yaml"
    threads: TORCH_JOB_THREADS
    resources:
        **GPU_JOB,
        mem_mb=8000,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        model=lambda wc: sr_model_settings(config, wc.model),
        seed=config["seed"],
        # Recorded in the model file's metadata: what the model was trained on.
        profile=lambda wc: PROFILES[wc.profile],
        crop=lambda wc: None if WHOLE_IMAGES else config["crop_filter"],
        # Not an output: a rerun after a kill resumes from it, and Snakemake must not delete it.
        checkpoint_dir=lambda wc: f"results/checkpoints/{wc.model}/{wc.profile}",
    script:
        "../scripts/train_sr.py"


rule infer_sr:
    input:
        lr="results/degrade/{profile}/shards/{shard}.parquet",
        model="results/models/{model}/{profile}/model.safetensors",
    output:
        intermediate("results/sr/{model}/{profile}/shards/{shard}.parquet"),
    log:
        "results/logs/sr/{model}/{profile}/{shard}.log",
    benchmark:
        "results/benchmarks/sr/{model}/{profile}/{shard}.tsv"
    wildcard_constraints:
        model="|".join(SR_MODELS) or "no-learned-models",
    conda:
        "../envs/torch.yaml"
    threads: TORCH_JOB_THREADS
    resources:
        **GPU_JOB,
        mem_mb=8000,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        settings=SR_SETTINGS,
    script:
        "../scripts/infer_sr.py"
