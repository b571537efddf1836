from karyosr import logs
from karyosr.dataset import pairs

logs.setup(snakemake.log[0])
pairs.run_register(snakemake.input[0], snakemake.params.register, snakemake.output[0])
