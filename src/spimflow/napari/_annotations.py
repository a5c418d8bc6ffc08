"""A dock widget listing a ClickPoints project's annotations (plane, rating, comment,
tags); selecting a row moves the viewer to that plane."""

from __future__ import annotations

import napari
from qtpy.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

COLUMNS = ("plane", "rating", "comment", "tags")


def project_annotations(layers) -> tuple[list[dict], list[str], object | None]:
    """The annotations and tags a project layer carries (from the spimflow reader), with
    the layer (for its z scale); empty when no layer holds any."""
    for layer in layers:
        meta = getattr(layer, "metadata", {}) or {}
        if "annotations" in meta:
            return list(meta["annotations"]), list(meta.get("tags", [])), layer
    return [], [], None


def annotation_rows(records: list[dict]) -> list[tuple[str, str, str, str]]:
    """Table rows (plane, rating, comment, tags), sorted by plane.

    Parameters
    ----------
    records : list of dict
        Annotation records (``z, rating, comment, tags``).

    Returns
    -------
    list of tuple of str

    Examples
    --------
    >>> annotation_rows([{"z": 7, "rating": 2, "comment": "bubble", "tags": ["artefact"]},
    ...                  {"z": 3, "rating": 0, "comment": "", "tags": []}])
    [('3', '0', '', ''), ('7', '2', 'bubble', 'artefact')]
    """
    out = []
    for r in sorted(records, key=lambda r: r["z"]):
        out.append((str(r["z"]), str(r.get("rating", 0)), r.get("comment", ""), ", ".join(r.get("tags", []))))
    return out


class AnnotationsWidget(QWidget):
    """Annotations of the open project; click a row to go to its plane."""

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.summary = QLabel("")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.cellClicked.connect(self.go_to_row)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)
        self._layer = None
        self._rows: list[tuple[str, str, str, str]] = []
        self.viewer.layers.events.inserted.connect(self.refresh)
        self.viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None) -> None:
        """Reload the table from the viewer's layers."""
        records, tags, self._layer = project_annotations(self.viewer.layers)
        self._rows = annotation_rows(records)
        self.table.setRowCount(len(self._rows))
        for i, row in enumerate(self._rows):
            for j, value in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(value))
        self.summary.setText(
            f"{len(self._rows)} annotations; tags: {', '.join(tags) or 'none'}"
            if self._layer is not None
            else "no annotation project open"
        )

    def go_to_row(self, row: int, column: int = 0) -> None:
        """Move the viewer to the plane of annotation ``row``."""
        if self._layer is None or not 0 <= row < len(self._rows):
            return
        z = float(self._rows[row][0])
        world = z * float(self._layer.scale[0]) + float(self._layer.translate[0])
        self.viewer.dims.set_point(0, world)
