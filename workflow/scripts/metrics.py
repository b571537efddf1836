from karyosr import logs
from karyosr.quality import scoring

logs.setup(snakemake.log[0])
scoring.run(
    snakemake.input.hr, snakemake.input.sr, snakemake.params.metrics, snakemake.input.pristine, snakemake.output[0]
)
