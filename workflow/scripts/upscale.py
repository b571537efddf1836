from karyosr import logs
from karyosr.sr import upscale

logs.setup(snakemake.log[0])
upscale.run(snakemake.input[0], snakemake.wildcards.method, snakemake.params.unsharp, snakemake.output[0])
