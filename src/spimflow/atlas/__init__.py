"""Reference atlases: the region ontology, the :class:`Atlas` model and its loaders.

See ``docs/atlases.md``. Public API::

    from spimflow.atlas import Atlas, Ontology, Region, load_atlas, load_brainglobe, load_allen

Conventions: volumes (z, y, x), voxel centres at integer indices, voxel sizes (z, y, x)
µm, BrainGlobe origin code for the orientation, hemispheres 1 = left / 2 = right /
0 = outside, ontology depth 0 at the root of the file read.
"""

from spimflow.atlas.loaders import (
    convert_hemispheres,
    load_allen,
    load_atlas,
    load_brainglobe,
    read_volume,
)
from spimflow.atlas.model import (
    LEFT,
    RIGHT,
    Atlas,
    lr_axis,
    midline_hemispheres,
    midline_sides,
    nearest_voxels,
)
from spimflow.atlas.ontology import DEFAULT_RGB, IdTable, Ontology, Region

__all__ = [
    "Atlas",
    "Ontology",
    "Region",
    "IdTable",
    "DEFAULT_RGB",
    "LEFT",
    "RIGHT",
    "load_atlas",
    "load_brainglobe",
    "load_allen",
    "read_volume",
    "convert_hemispheres",
    "lr_axis",
    "midline_sides",
    "midline_hemispheres",
    "nearest_voxels",
]
