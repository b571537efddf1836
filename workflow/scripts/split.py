from karyosr import logs
from karyosr.dataset import split

logs.setup(snakemake.log[0])
split.run(snakemake.input[0], snakemake.params.fractions, snakemake.params.seed, snakemake.output[0],
          tiled=snakemake.params.tiled)
