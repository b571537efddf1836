from karyosr import logs
from karyosr.classify import predict

logs.setup(snakemake.log[0])
predict.run_predict(
    eval_shards=snakemake.input.eval,
    split_manifest=snakemake.input.split,
    model_path=snakemake.input.model,
    experiment=snakemake.params.experiment,
    seed=int(snakemake.wildcards.seed),
    out_predictions=snakemake.output.predictions,
    out_features=snakemake.output.features,
    threads=snakemake.threads,
)
