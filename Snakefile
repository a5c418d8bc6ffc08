# spimflow: run one brain with `snakemake --configfile <sample.yaml> --cores N`.
from snakemake.utils import min_version

min_version("9.0")


# The demo config is the default only when no --configfile/--config is given, so a
# user's config is never merged with the demo's keys.
if not workflow.configfiles and not config:

    configfile: "config/sample.yaml"


include: "workflow/rules/common.smk"
# stage rule files, one line each, in pipeline order
include: "workflow/rules/config.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/resample.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/cells.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/cohort.smk"


# remove the temporaries of killed jobs (spimflow.io.atomic) before any job runs
onstart:
    on_start()


rule all:
    default_target: True
    input:
        TARGETS,
