"""Annotations: a ClickPoints-compatible project store (``.cdb``) and point files.

* :class:`Project` reads and writes ClickPoints project files (SQLite, schema 22).
* :func:`markers_to_frame` / :func:`frame_to_markers` convert between markers and
  spimflow's point table (``z, y, x`` in voxel-centre coordinates; the +0.5 of
  ClickPoints' pixel convention is :data:`CLICKPOINTS_PIXEL_OFFSET`).
* :func:`read_points` / :func:`write_points` read and write point tables as ``.cdb``,
  Fiji Cell Counter ``.xml``, ``.csv`` and ``.parquet``.

See ``docs/annotation.md``.
"""

from spimflow.annotate.cellcounter import format_cellcounter, parse_cellcounter, read_cellcounter, write_cellcounter
from spimflow.annotate.coords import CLICKPOINTS_PIXEL_OFFSET, clickpoints_to_voxel, voxel_to_clickpoints
from spimflow.annotate.errors import AnnotationError, NotAProjectError, ReadOnlyProjectError
from spimflow.annotate.points import read_points, write_points
from spimflow.annotate.schema import SCHEMA_VERSION
from spimflow.annotate.smarttext import render_text, resolve_text
from spimflow.annotate.store import Project, frame_to_markers, markers_to_frame

__all__ = [
    "CLICKPOINTS_PIXEL_OFFSET",
    "SCHEMA_VERSION",
    "AnnotationError",
    "NotAProjectError",
    "Project",
    "ReadOnlyProjectError",
    "clickpoints_to_voxel",
    "format_cellcounter",
    "frame_to_markers",
    "markers_to_frame",
    "parse_cellcounter",
    "read_cellcounter",
    "read_points",
    "render_text",
    "resolve_text",
    "voxel_to_clickpoints",
    "write_cellcounter",
    "write_points",
]
