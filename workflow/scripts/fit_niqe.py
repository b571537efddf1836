from karyosr import logs
from karyosr.quality import scoring as metrics

logs.setup(snakemake.log[0])
metrics.fit_niqe_model(snakemake.input.hr, snakemake.input.split, snakemake.params.metrics, snakemake.output[0])
