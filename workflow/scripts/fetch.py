from karyosr import logs
from karyosr.dataset import photos, spreads, synthetic
from karyosr.io import fetch

logs.setup(snakemake.log[0])
source = snakemake.params.source
if source["type"] == "synthetic":
    synthetic.generate(snakemake.output[0], snakemake.params.synthetic, snakemake.params.seed)
elif source["type"] == "metaphase":
    spreads.generate(snakemake.output[0], snakemake.params.synthetic, snakemake.params.seed)
elif source["type"] == "photos":
    photos.generate_photos(snakemake.output[0], snakemake.params.synthetic, snakemake.params.seed)
else:
    fetch.fetch_source(source, snakemake.output[0], cache_dir="resources/downloads")
