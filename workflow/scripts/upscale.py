from karyosr import logs, upscale

logs.setup(snakemake.log[0])
upscale.run(snakemake.input[0], snakemake.wildcards.method, snakemake.params.unsharp, snakemake.output[0])
