"""ClearMap-style cell detection, run block by block (see docs/detection.md).

Chain: illumination correction → background removal (opening) → difference of
Gaussians → regional/h-maxima above a threshold → centres (sub-voxel) → seeded
watershed shapes → per-cell size and intensities. Each step is a pure function of
arrays and the :class:`~spimflow.params.detect.DetectParams` model.
"""

from spimflow.steps.detect.chain import (
    CELL_COLUMNS,
    MEASURED_COLUMNS,
    Filtered,
    Maxima,
    Radii,
    detect_block,
    detect_cells,
    detection_radii,
    empty_cells,
    filter_chain,
    find_maxima,
    measure_cells,
    owned_mask,
    required_overlap,
)
from spimflow.steps.detect.filters import (
    IlluminationField,
    dog_filter,
    estimate_illumination,
    profile_illumination,
    remove_background,
)
from spimflow.steps.detect.threshold import threshold_cells

__all__ = [
    "CELL_COLUMNS",
    "MEASURED_COLUMNS",
    "Filtered",
    "Maxima",
    "Radii",
    "IlluminationField",
    "detect_block",
    "detect_cells",
    "detection_radii",
    "dog_filter",
    "empty_cells",
    "estimate_illumination",
    "filter_chain",
    "find_maxima",
    "measure_cells",
    "owned_mask",
    "profile_illumination",
    "remove_background",
    "required_overlap",
    "threshold_cells",
]
