# karyosr: low-resolution chromosome images -> super-resolved images and classifications,
# with the comparison reports that show what each method buys.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/crop_filter.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/degrade.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/upscale.smk"
include: "workflow/rules/sr.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
