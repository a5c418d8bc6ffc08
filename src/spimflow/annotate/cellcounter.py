"""Fiji/ImageJ Cell Counter marker files (XML) to and from spimflow's point table.

Fiji's Cell Counter plugin saves::

    <CellCounter_Marker_File>
      <Image_Properties><Image_Filename>stack.tif</Image_Filename></Image_Properties>
      <Marker_Data>
        <Current_Type>1</Current_Type>
        <Marker_Type>
          <Type>1</Type>
          <Name>neuron</Name>            (absent in older files: the name is "Type 1")
          <Marker><MarkerX>12</MarkerX><MarkerY>40</MarkerY><MarkerZ>3</MarkerZ></Marker>
        </Marker_Type>
      </Marker_Data>
    </CellCounter_Marker_File>

``MarkerX``/``MarkerY`` are integer pixel indices (the pixel clicked), which is spimflow's
voxel-centre convention already (no offset). ``MarkerZ`` is the ImageJ stack slice, which
counts from 1: z = MarkerZ - 1 (``z_base=1``). In a hyperstack with several channels or
time points the slice number mixes them; only plain z stacks map to z. Writing rounds
x, y and z to integers, as Cell Counter stores nothing finer.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.annotate.errors import AnnotationError
from spimflow.io.atomic import atomic_path

ROOT = "CellCounter_Marker_File"
_DEFAULT_NAME = re.compile(r"^Type (\d+)$")


def default_type_name(counter: int) -> str:
    """The name Cell Counter gives counter ``counter`` when the file has none.

    Parameters
    ----------
    counter : int

    Returns
    -------
    str
        ``"Type <counter>"``.
    """
    return f"Type {int(counter)}"


def _number(text: str | None, what: str, source: str) -> float:
    try:
        return float(str(text).strip())
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{source}: {what} is not a number ({text!r})") from exc


def parse_cellcounter(text: str | bytes, *, z_base: int = 1, source: str = "<xml>") -> pd.DataFrame:
    """Parse Cell Counter XML into a point table.

    Parameters
    ----------
    text : str or bytes
        The XML document.
    z_base : int
        Number of the first slice in ``MarkerZ`` (1 in Fiji).
    source : str
        Name used in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns ``z, y, x, type, counter`` (``type`` = counter name, ``counter`` = the
        ``Type`` number), in file order. ``attrs`` holds ``image_filename``,
        ``current_type`` and ``cellcounter_types`` (``[counter, name]`` pairs, also of
        counters without markers).
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise AnnotationError(f"{source}: not well-formed XML ({exc})") from exc
    if root.tag != ROOT:
        raise AnnotationError(
            f"{source}: not a Cell Counter marker file (root element <{root.tag}>, expected <{ROOT}>)"
        )
    rows: list[tuple[int, float, float, str, int]] = []
    types: list[list] = []
    for block in root.iter("Marker_Type"):
        counter = int(_number(block.findtext("Type"), "Marker_Type/Type", source))
        name_el = block.find("Name")
        name = name_el.text.strip() if name_el is not None and name_el.text else default_type_name(counter)
        types.append([counter, name])
        for marker in block.iter("Marker"):
            x = _number(marker.findtext("MarkerX"), "MarkerX", source)
            y = _number(marker.findtext("MarkerY"), "MarkerY", source)
            z_text = marker.findtext("MarkerZ")
            z = int(_number(z_text, "MarkerZ", source)) - z_base if z_text is not None else 0
            if z < 0:
                raise AnnotationError(
                    f"{source}: MarkerZ {z + z_base} is below the first slice {z_base} "
                    "(pass z_base=0 for files that count slices from 0)"
                )
            rows.append((z, y, x, name, counter))
    frame = pd.DataFrame(
        {
            "z": np.array([r[0] for r in rows], dtype=np.int64),
            "y": np.array([r[1] for r in rows], dtype=np.float64),
            "x": np.array([r[2] for r in rows], dtype=np.float64),
            "type": np.array([r[3] for r in rows], dtype=object),
            "counter": np.array([r[4] for r in rows], dtype=np.int64),
        }
    )
    current = root.findtext("Marker_Data/Current_Type")
    frame.attrs["image_filename"] = (root.findtext("Image_Properties/Image_Filename") or "").strip()
    frame.attrs["current_type"] = int(_number(current, "Current_Type", source)) if current else None
    frame.attrs["cellcounter_types"] = types
    return frame


def read_cellcounter(path: str | os.PathLike, *, z_base: int = 1) -> pd.DataFrame:
    """Read a Cell Counter XML file (see :func:`parse_cellcounter`).

    Parameters
    ----------
    path : str or os.PathLike
    z_base : int

    Returns
    -------
    pandas.DataFrame
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read the Cell Counter file ({exc})") from exc
    return parse_cellcounter(data, z_base=z_base, source=str(path))


def _counters(frame: pd.DataFrame, types: Any) -> tuple[np.ndarray, dict[int, str]]:
    """Counter number of every row, and the name of every counter."""
    names: dict[int, str] = {}
    for counter, name in types.items() if isinstance(types, Mapping) else (types or []):
        names[int(counter)] = str(name)
    n = len(frame)
    if "counter" in frame.columns and frame["counter"].notna().all():
        counters = frame["counter"].to_numpy(dtype=np.int64)
        labels = frame["type"].tolist() if "type" in frame.columns else [None] * n
        for c, label in zip(counters.tolist(), labels, strict=True):
            if not pd.isna(label):
                if names.setdefault(c, str(label)) != str(label):
                    raise AnnotationError(f"counter {c} has two names: {names[c]!r} and {label!r}")
        return counters, names
    if "type" not in frame.columns:
        return np.ones(n, dtype=np.int64), names
    values = frame["type"]
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64), names
    by_name = {name: c for c, name in names.items()}
    labels = ["" if pd.isna(v) else str(v) for v in values.tolist()]
    for label in dict.fromkeys(labels):
        if label in by_name:
            continue
        match = _DEFAULT_NAME.match(label)
        if match and int(match.group(1)) not in names:
            c = int(match.group(1))
        else:
            c = 1
            while c in names:
                c += 1
        names[c], by_name[label] = label or default_type_name(c), c
    return np.array([by_name[label] for label in labels], dtype=np.int64), names


def format_cellcounter(
    frame: pd.DataFrame,
    *,
    image_filename: str | None = None,
    current_type: int | None = None,
    types: Mapping[int, str] | list | None = None,
    z_base: int = 1,
) -> str:
    """Cell Counter XML for a point table.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``z, y, x`` (voxel-centre coordinates, rounded to integers) and optionally
        ``type`` (names, or counter numbers if integer) and ``counter`` (numbers).
    image_filename : str, optional
        Default: ``frame.attrs["image_filename"]`` or "".
    current_type : int, optional
        Default: ``frame.attrs["current_type"]`` or the first counter.
    types : mapping or list of pairs, optional
        Counter number -> name; also writes counters without markers. Default:
        ``frame.attrs["cellcounter_types"]``. Names of other types come from ``type``
        (``"Type N"`` keeps number N; other names get the lowest free numbers).
    z_base : int
        Number written for plane z = 0 (1 in Fiji).

    Returns
    -------
    str
    """
    missing = [c for c in ("z", "y", "x") if c not in frame.columns]
    if missing:
        raise AnnotationError(f"the point table lacks column(s) {', '.join(missing)} (needs z, y, x)")
    if types is None:
        types = frame.attrs.get("cellcounter_types")
    counters, names = _counters(frame, types)
    for c in np.unique(counters).tolist():
        names.setdefault(int(c), default_type_name(c))
    xyz = np.rint(frame[["x", "y", "z"]].to_numpy(dtype=np.float64))
    if len(xyz) and (not np.isfinite(xyz).all() or xyz.min() < 0):
        raise AnnotationError("Cell Counter needs finite, non-negative x, y, z")
    xyz = xyz.astype(np.int64)
    if image_filename is None:
        image_filename = str(frame.attrs.get("image_filename") or "")
    if current_type is None:
        current_type = frame.attrs.get("current_type") or (min(names) if names else 1)
    root = ET.Element(ROOT)
    ET.SubElement(ET.SubElement(root, "Image_Properties"), "Image_Filename").text = image_filename
    data = ET.SubElement(root, "Marker_Data")
    ET.SubElement(data, "Current_Type").text = str(int(current_type))
    for c in sorted(names):
        block = ET.SubElement(data, "Marker_Type")
        ET.SubElement(block, "Type").text = str(c)
        ET.SubElement(block, "Name").text = names[c]
        for x, y, z in xyz[counters == c].tolist():
            marker = ET.SubElement(block, "Marker")
            ET.SubElement(marker, "MarkerX").text = str(x)
            ET.SubElement(marker, "MarkerY").text = str(y)
            ET.SubElement(marker, "MarkerZ").text = str(z + z_base)
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_cellcounter(frame: pd.DataFrame, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write a point table as a Cell Counter XML file, atomically.

    Parameters
    ----------
    frame : pandas.DataFrame
    path : str or os.PathLike
    **kwargs
        Passed to :func:`format_cellcounter`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    text = format_cellcounter(frame, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
