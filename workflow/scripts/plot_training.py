from pathlib import Path

from karyosr import logs
from karyosr.io import shards
from karyosr.report import figures

logs.setup(snakemake.log[0])
# results/models/<model>/<profile>/history.parquet -> "<model> (<profile>)"
histories = {f"{Path(p).parent.parent.name} ({Path(p).parent.name})": shards.read_table(p) for p in snakemake.input}
figures.training_curves(histories, snakemake.output.png, snakemake.output.svg)
