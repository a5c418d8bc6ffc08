"""The one place where ClickPoints' pixel convention meets spimflow's voxel convention.

spimflow (like napari) puts the *centre* of voxel ``i`` at coordinate ``i``. ClickPoints draws
images in a Qt scene where pixel ``i`` covers ``[i, i + 1)``, so the centre of that pixel is
stored as ``i + 0.5``. Only x and y are affected: ClickPoints has no z axis, a plane is an
``image`` row and z is its ``sort_index`` (an integer, no offset).
"""

from __future__ import annotations

import numpy as np

#: Added to a spimflow voxel coordinate (x or y) to get the ClickPoints marker coordinate.
CLICKPOINTS_PIXEL_OFFSET = 0.5


def voxel_to_clickpoints(values):
    """Convert voxel-centre coordinates (x or y) to ClickPoints marker coordinates.

    Parameters
    ----------
    values : float or array_like
        Coordinates in spimflow's convention (voxel ``i`` has its centre at ``i``).

    Returns
    -------
    float or numpy.ndarray
        ``values + CLICKPOINTS_PIXEL_OFFSET``.
    """
    return np.asarray(values, dtype=np.float64) + CLICKPOINTS_PIXEL_OFFSET


def clickpoints_to_voxel(values):
    """Convert ClickPoints marker coordinates (x or y) to voxel-centre coordinates.

    Parameters
    ----------
    values : float or array_like
        Coordinates as stored in a ClickPoints ``marker`` row.

    Returns
    -------
    float or numpy.ndarray
        ``values - CLICKPOINTS_PIXEL_OFFSET``.
    """
    return np.asarray(values, dtype=np.float64) - CLICKPOINTS_PIXEL_OFFSET
