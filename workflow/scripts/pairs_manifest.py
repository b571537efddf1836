from karyosr import logs
from karyosr.dataset import pairs

logs.setup(snakemake.log[0])
pairs.run_pairs_manifest(list(snakemake.input), snakemake.output.pairs, snakemake.output.rejected)
