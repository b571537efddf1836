from karyosr import logs
from karyosr.report import viewer

logs.setup(snakemake.log[0])
params = snakemake.params
viewer.run(snakemake.input, params.profiles, params.title, params.max_images, snakemake.output[0])
