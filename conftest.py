"""Repository-level pytest set-up: the napari plugin's modules are collected for doctests
only when napari is installed (the core never needs it)."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("napari") else ["src/spimflow/napari/*"]
