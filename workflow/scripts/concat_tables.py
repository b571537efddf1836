from karyosr import logs
from karyosr.io import shards

logs.setup(snakemake.log[0])
shards.write_table(snakemake.output[0], shards.concat_tables(snakemake.input))
