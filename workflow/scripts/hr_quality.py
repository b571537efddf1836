from karyosr import logs
from karyosr.quality import scoring

logs.setup(snakemake.log[0])
scoring.run_hr_quality(
    snakemake.input.hr, snakemake.input.split, snakemake.params.metrics, snakemake.input.pristine, snakemake.output[0]
)
