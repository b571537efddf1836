from karyosr import logs
from karyosr.quality import scoring

logs.setup(snakemake.log[0])
scoring.fit_niqe_model(snakemake.input.hr, snakemake.input.split, snakemake.params.metrics, snakemake.output[0])
