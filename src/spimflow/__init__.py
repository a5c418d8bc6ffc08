"""spimflow: whole-brain light-sheet cell mapping as a declarative Snakemake workflow."""

__version__ = "0.1.0"
