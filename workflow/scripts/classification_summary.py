from pathlib import Path

import pandas as pd

from karyosr import logs
from karyosr.classify import ensemble, karyotype, metrics
from karyosr.io import shards
from karyosr.report import figures

logs.setup(snakemake.log[0])
out, params = snakemake.output, snakemake.params
predictions, experiments = ensemble.add_ensembles(
    shards.concat_tables(snakemake.input.predictions), params.experiments, params.ensembles
)
if params.decoding["cell_decoding"]:
    predictions, cells = karyotype.decode(predictions, params.decoding)
else:
    cells = pd.DataFrame(columns=karyotype.CELL_COLUMNS)
predictions = predictions.drop(columns="probabilities")
shards.write_table(out.predictions, predictions)
shards.write_table(out.cells, cells)
runs = metrics.run_summary(predictions, params.bootstrap)
shards.write_table(out.runs, runs)
shards.write_table(out.over_seeds, metrics.over_seeds(predictions, experiments, params.bootstrap))
shards.write_table(out.comparisons, metrics.comparisons(predictions, experiments, params.bootstrap))
shards.write_table(out.per_class, metrics.per_class(predictions, params.bootstrap))
for experiment, table_path, png in zip([e["name"] for e in experiments], out.confusion, out.confusion_png):
    matrix = metrics.confusion(predictions, experiment)
    shards.write_table(table_path, matrix.reset_index(names="true"))
    figures.confusion_plot(matrix, f"{experiment}: confusion (all seeds)", png)
features = {Path(p).parent.name: shards.read_table(p) for p in snakemake.input.features}
figures.tsne_plot(features, out.tsne)
