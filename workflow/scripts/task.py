# Generic rule script: runs spimflow.tasks.<params.task>.run(snakemake) with logging.
from spimflow.tasks import dispatch

dispatch(snakemake)  # noqa: F821 - injected by Snakemake
