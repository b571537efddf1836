from karyosr import logs
from karyosr.io import shards
from karyosr.report import figures

logs.setup(snakemake.log[0])
split = shards.read_table(snakemake.input.split)
ids = figures.pick_samples(split, snakemake.params.n_images)
profile = snakemake.wildcards.profile
sr = {
    method: figures.load_images([p for p in snakemake.input.sr if f"/sr/{method}/" in p], ids)
    for method in snakemake.params.methods
}
figures.sample_grid(
    ids,
    hr=figures.load_images(snakemake.input.hr, ids),
    lr=figures.load_images(snakemake.input.lr, ids),
    sr=sr,
    title=f"Test images, profile {profile}",
    out_png=snakemake.output[0],
)
