from karyosr import logs, upscale

logs.setup(snakemake.log[0])
upscale.run(snakemake.input[0], snakemake.wildcards.method, snakemake.output[0])
