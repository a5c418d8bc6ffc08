"""Parameters of the annotation-project stage (detections out to a ClickPoints-compatible
``.cdb`` project for people to correct, and back in as the curated cells)."""

from pydantic import Field, model_validator

from spimflow.params import StrictModel


class AnnotateParams(StrictModel):
    """Curate detected cells in an annotation project (see docs/annotation.md)."""

    enabled: bool = Field(
        False,
        description="Export every detection to results/<sample>/annotation/cells.cdb (types cell and rejected) "
        "and import the edited project as cells/cells_curated.parquet.",
    )
    use_curated: bool = Field(
        False,
        description="Count the curated cells instead of the thresholded ones: cells_atlas, density maps, region "
        "tables and statistics follow the project's edits.",
    )
    overwrite_edits: bool = Field(
        False,
        description="Let a new export replace a project that holds edits made after its export "
        "(otherwise the export stops and names the file).",
    )

    @model_validator(mode="after")
    def _curated_needs_enabled(self):
        if self.use_curated and not self.enabled:
            raise ValueError("use_curated needs enabled: true (the curated cells come from the project)")
        return self
