from karyosr import logs
from karyosr.io import export, shards

logs.setup(snakemake.log[0])
split = shards.read_table(snakemake.input.split)
export.export_images(snakemake.input.shards, export.ids_in_split(split, "test"), snakemake.output[0], labels=split)
