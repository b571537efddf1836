from karyosr import logs
from karyosr.dataset import ingest

logs.setup(snakemake.log[0])
ingest.run_inventory(
    root=snakemake.input[0],
    dataset=snakemake.params.dataset,
    layout=snakemake.params.layout,
    n_shards=snakemake.params.n_shards,
    out_table=snakemake.output[0],
)
