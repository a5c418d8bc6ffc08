"""spimflow in napari (the only package that imports napari or Qt).

An npe2 plugin (``napari.yaml``): a reader that turns a results folder, or any file in it
(OME-Zarr, cell tables, ``.cdb`` projects, Cell Counter XML), into aligned layers in raw
sample space; a writer that saves Points layers back into an annotation project; a
curation widget and a detection-tuning widget. ``spimflow view results/<sample>`` opens a
viewer with all of it. See ``docs/napari.md``.
"""
