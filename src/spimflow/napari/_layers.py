"""spimflow files → napari layer data (``(data, kwargs, layer_type)`` tuples), all aligned in
raw sample space: world coordinates are micrometres along the raw signal's (z, y, x) axes.

Images carry ``scale`` = their voxel size; the atlas annotation (warped into the resampled
grid by the register rule) is transposed and flipped into the raw axis order and carries
the scale and offset that put its voxels onto the raw grid, so it lies exactly over the
raw data; cells are Points in raw voxels with the raw scale.
Atlas-space images (density maps, p-value maps) get the atlas voxel size as scale (their
own world: open them in a viewer of their own, ``spimflow view --space atlas``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
import zarr
from napari.utils.colormaps import DirectLabelColormap
from pydantic import ValidationError

from spimflow.atlas import Ontology
from spimflow.config import SampleConfig
from spimflow.errors import ConfigError, InputFileError
from spimflow.geometry import ResampleGrid
from spimflow.io.omezarr import open_ome_zarr

LayerData = tuple[Any, dict, str]
KEPT_COLOUR = np.array([0.1, 1.0, 0.2, 1.0])
REJECTED_COLOUR = np.array([1.0, 0.2, 1.0, 1.0])


# -- finding things -------------------------------------------------------------------------


def results_dir_of(path: Path) -> Path | None:
    """The ``results/<sample>`` folder ``path`` is in (or is): the one holding
    ``config.resolved.yaml``."""
    for folder in [path, *path.parents]:
        if (folder / "config.resolved.yaml").is_file():
            return folder
    return None


def sample_config(results_dir: Path) -> SampleConfig:
    """The resolved config a results folder was made with (results of an older spimflow
    whose config keys have changed still open: only the keys viewing needs are kept)."""
    data = yaml.safe_load((results_dir / "config.resolved.yaml").read_text())
    try:
        return SampleConfig.model_validate(data)
    except ValidationError:
        return SampleConfig.model_validate(
            {k: data[k] for k in ("sample", "results", "channels", "atlas") if k in data}
        )


def workdir_of(results_dir: Path, cfg: SampleConfig) -> Path:
    """The folder the run's relative paths are taken from (where Snakemake ran)."""
    depth = len(Path(cfg.results).parts) + 1
    return results_dir.resolve().parents[depth - 1] if depth else results_dir


def ontology_of(results_dir: Path, cfg: SampleConfig) -> Ontology | None:
    """The atlas ontology of a run (None for a detection-only run, or when its file cannot be found)."""
    if cfg.atlas is None:
        return None
    try:
        path = cfg.atlas.ontology_file(workdir_of(results_dir, cfg))
    except ConfigError:  # an atlas by name that is no longer in the BrainGlobe cache
        return None
    return Ontology.from_file(path) if path.is_file() else None


# -- images ---------------------------------------------------------------------------------------


def contrast_limits(arr) -> tuple[float, float]:
    """Contrast from the 1st and 99.8th percentiles of the (small) array, not the dtype range."""
    values = np.asarray(arr)
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    if not values.size:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(values, [1.0, 99.8]))
    return (lo, hi if hi > lo else lo + 1.0)


def multiscale_levels(path: Path) -> list:
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    ms = attrs.get("ome", attrs)["multiscales"][0]
    return [group[d["path"]] for d in ms["datasets"]]


def image_layer(path: Path, name: str | None = None, **kwargs) -> LayerData:
    """An OME-Zarr image as a (multiscale) Image layer with its voxel size as scale."""
    img = open_ome_zarr(path)
    levels = multiscale_levels(path)
    name = name or path.name.removesuffix(".ome.zarr")
    meta = {"spimflow_path": str(path), **img.attrs.get("spimflow", {})}
    kw = {"name": name, "scale": img.voxel_size, "contrast_limits": contrast_limits(levels[-1]), "metadata": meta}
    kw.update(kwargs)
    if len(levels) > 1:
        return levels, {**kw, "multiscale": True}, "image"
    return levels[0], kw, "image"


def labels_layer(path: Path, name: str | None = None, **kwargs) -> LayerData:
    """An integer OME-Zarr image as a Labels layer with its voxel size as scale."""
    img = open_ome_zarr(path)
    kw = {
        "name": name or path.name.removesuffix(".ome.zarr"),
        "scale": img.voxel_size,
        "metadata": {"spimflow_path": str(path)},
        **kwargs,
    }
    return img.array, kw, "labels"


# -- the atlas over the raw data --------------------------------------------------------------------


def resampled_in_raw_axes(data: np.ndarray, grid: ResampleGrid) -> tuple[np.ndarray, tuple, tuple]:
    """An image on the resampled (atlas-aligned) grid, re-ordered and flipped into the raw
    sample's axis order, with the ``scale`` and ``translate`` (µm) that put it exactly over
    the raw data.

    napari slices a layer along its own data axes, so the layer's transform must keep
    axes apart (no permutation in an affine): the array is transposed and flipped instead,
    which leaves a per-axis scale and offset.
    """
    perm, flip = grid.orientation.perm, grid.orientation.flip
    order = [perm.index(j) for j in range(3)]  # resampled axis shown as raw axis j
    view = np.transpose(data, order)
    view = view[tuple(slice(None, None, -1) if flip[order[j]] else slice(None) for j in range(3))]
    shape = view.shape
    scale, translate = [], []
    for j in range(3):
        ends = np.zeros((2, 3))
        ends[1, j] = 1.0
        # the resampled index of view voxel 0 and 1 along axis j (others at 0)
        r = np.zeros((2, 3))
        i = order[j]
        r[:, i] = [shape[j] - 1, shape[j] - 2] if flip[i] else [0, 1]
        s = grid.resampled_to_sample(r)[:, j]
        scale.append(float((s[1] - s[0]) * grid.raw_voxel_size[j]))
        translate.append(float(s[0] * grid.raw_voxel_size[j]))
    return np.ascontiguousarray(view), tuple(scale), tuple(translate)


def region_colormap(ontology: Ontology, labels: np.ndarray | None = None) -> DirectLabelColormap:
    """Ontology colours per region id (any id size, Allen ids above 2^16 included)."""
    ids = ontology.ids if labels is None else [int(v) for v in labels if int(v) in ontology]
    colours: dict[int | None, Any] = {int(r): (*np.asarray(ontology.colour(int(r))) / 255.0, 1.0) for r in ids}
    colours[0] = (0.0, 0.0, 0.0, 0.0)
    colours[None] = (0.5, 0.5, 0.5, 1.0)  # labels missing from the ontology
    return DirectLabelColormap(color_dict=colours)


def region_features(ontology: Ontology, labels: np.ndarray) -> pd.DataFrame:
    """Hover table of a Labels layer: acronym and name for every label value present."""
    rows = [{"index": 0, "acronym": "outside", "name": "outside the brain"}]
    for value in labels:
        v = int(value)
        if v == 0:
            continue
        known = v in ontology
        rows.append(
            {
                "index": v,
                "acronym": ontology.acronym(v) if known else f"unknown:{v}",
                "name": ontology.name(v) if known else "not in the ontology",
            }
        )
    return pd.DataFrame(rows)


def annotation_layer(results_dir: Path, cfg: SampleConfig, channel: str = "signal") -> LayerData | None:
    """The atlas annotation laid over the raw data of ``channel`` (Labels, with hover names).

    Uses ``registration/annotation_in_raw.ome.zarr`` (the regions on the raw grid, from the
    exact point transform, as the cell tables) when the run made it, else the annotation
    warped onto the resampled grid, re-ordered into the raw axes.
    """
    raw_grid = results_dir / "registration" / "annotation_in_raw.ome.zarr"
    resampled = results_dir / "registration" / "annotation_in_sample.ome.zarr"
    reg = results_dir / "registration" / "registration.json"
    if raw_grid.exists():
        img = open_ome_zarr(raw_grid)
        data = np.asarray(img.array)
        scale = img.voxel_size
        translate = tuple(img.attrs.get("spimflow", {}).get("translation_um", (0.0, 0.0, 0.0)))
        path = raw_grid
    elif resampled.exists() and reg.is_file():
        grid = ResampleGrid.from_dict(json.loads(reg.read_text())["grids"][channel])
        data, scale, translate = resampled_in_raw_axes(np.asarray(open_ome_zarr(resampled).array), grid)
        path = resampled
    else:
        return None
    kw: dict[str, Any] = {
        "name": "atlas regions",
        "scale": tuple(scale),
        "translate": tuple(translate),
        "opacity": 0.35,
        "metadata": {"spimflow_path": str(path), "space": "raw"},
    }
    ontology = ontology_of(results_dir, cfg)
    if ontology is not None:
        present = np.unique(data)
        kw["colormap"] = region_colormap(ontology, present)
        kw["features"] = region_features(ontology, present)
    return data, kw, "labels"


# -- cells ---------------------------------------------------------------------------------------


def equivalent_diameter_um(volume_um3: np.ndarray) -> np.ndarray:
    """Diameter of the sphere with the cell's volume (µm)."""
    return 2.0 * np.cbrt(3.0 * np.asarray(volume_um3, float) / (4.0 * np.pi))


def points_layer(cells: pd.DataFrame, voxel_size, name: str, colour=None, **kwargs) -> LayerData:
    """Cells as Points in raw voxels (scale = voxel size), sized by their measured volume,
    with every table column as a feature."""
    data = cells[["z", "y", "x"]].to_numpy(np.float64)
    size = 10.0
    if "volume_um3" in cells.columns and len(cells):
        d = equivalent_diameter_um(cells["volume_um3"].fillna(0).to_numpy())
        size = np.maximum(d / float(min(voxel_size)), 3.0)
    features = cells.reset_index(drop=True)
    kw = {
        "name": name,
        "scale": tuple(voxel_size),
        "size": size,
        "features": features,
        "border_width": 0,
        "face_color": colour if colour is not None else KEPT_COLOUR,
    }
    kw.update(kwargs)
    return data, kw, "points"


def region_colours(cells: pd.DataFrame, ontology: Ontology | None, default=KEPT_COLOUR) -> np.ndarray | tuple:
    """Face colour per cell from its region's ontology colour."""
    if ontology is None or "region_id" not in cells.columns or not len(cells):
        return default
    out = np.tile(np.asarray(default, float), (len(cells), 1))
    for rid in np.unique(cells["region_id"]):
        if int(rid) in ontology and int(rid) != 0:
            out[cells["region_id"].to_numpy() == rid, :3] = np.asarray(ontology.colour(int(rid))) / 255.0
    return out


def counted_cells(results_dir: Path, cfg: SampleConfig) -> pd.DataFrame | None:
    """The cells the run counts, with atlas columns when they exist."""
    cells_dir = results_dir / "cells"
    for name in ("cells_atlas.parquet", cfg.counted_cells_file().name):
        if (cells_dir / name).is_file():
            return pd.read_parquet(cells_dir / name)
    return None


def cell_layers(results_dir: Path, cfg: SampleConfig) -> list[LayerData]:
    """Kept cells coloured by region, and the cells the thresholds rejected (hidden)."""
    vs = cfg.channels.signal.voxel_size
    cells = counted_cells(results_dir, cfg)
    layers = []
    if cells is not None:
        colour = region_colours(cells, ontology_of(results_dir, cfg))
        layers.append(points_layer(cells, vs, "cells", colour, metadata={"spimflow_role": "cells"}))
        raw_path = results_dir / "cells" / "cells_raw.parquet"
        if raw_path.is_file():
            raw = pd.read_parquet(raw_path)
            merged = raw.merge(cells[["z", "y", "x"]].drop_duplicates(), on=["z", "y", "x"], how="left", indicator=True)
            rejected = raw[(merged["_merge"] == "left_only").to_numpy()]
            layers.append(
                points_layer(
                    rejected,
                    vs,
                    "rejected cells",
                    REJECTED_COLOUR,
                    visible=False,
                    metadata={"spimflow_role": "rejected"},
                )
            )
    return layers


# -- whole folders ---------------------------------------------------------------------------------


def raw_space_layers(results_dir: Path) -> list[LayerData]:
    """Everything of a results folder that lies in raw sample space."""
    cfg = sample_config(results_dir)
    layers: list[LayerData] = []
    for name in ("autofluorescence", *cfg.channels.extra, "signal"):
        path = results_dir / "raw" / f"{name}.ome.zarr"
        if path.exists():
            layers.append(
                image_layer(
                    path,
                    name,
                    blending="additive",
                    colormap="gray" if name == "signal" else "magenta",
                    visible=name == "signal",
                )
            )
    annotation = annotation_layer(results_dir, cfg)
    if annotation is not None:
        layers.append(annotation)
    overlay = results_dir / "cells" / "qc_overlay.ome.zarr"
    if overlay.exists():
        layers.append(labels_layer(overlay, "detected shapes", visible=False, opacity=0.5))
    layers += cell_layers(results_dir, cfg)
    return layers


def atlas_space_layers(folder: Path) -> list[LayerData]:
    """Atlas-space images of a sample's ``maps/`` or a cohort's ``voxels/`` folder."""
    layers: list[LayerData] = []
    for sub in ("maps", "voxels"):
        for path in sorted((folder / sub).glob("*.ome.zarr")):
            layers.append(
                image_layer(
                    path,
                    colormap="inferno",
                    blending="additive",
                    visible=path.name.startswith(("density.", "p_signed.")),
                )
            )
    if not layers:
        raise InputFileError(f"{folder}: no atlas-space maps (maps/*.ome.zarr or voxels/*.ome.zarr)")
    return layers
