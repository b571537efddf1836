from karyosr import logs
from karyosr.io import atomic, shards
from karyosr.quality import scoring

logs.setup(snakemake.log[0])
per_image = shards.concat_tables(snakemake.input.sr)
summary = scoring.summarise(per_image)
shards.write_table(snakemake.output.per_image, per_image)
shards.write_table(snakemake.output.hr_quality, shards.concat_tables(snakemake.input.hr))
shards.write_table(snakemake.output.summary_parquet, summary)
atomic.write_text(snakemake.output.summary, summary.to_csv(index=False))
