from karyosr import logs
from karyosr.dataset import crop_filter

logs.setup(snakemake.log[0])
crop_filter.run(
    snakemake.input[0], snakemake.params.crop_filter, snakemake.output.shard, snakemake.output.rejected
)
