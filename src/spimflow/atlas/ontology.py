"""The region ontology (structure tree) of an atlas, and its readers.

An :class:`Ontology` is a forest of :class:`Region` nodes (id, acronym, name, parent id,
rgb colour). Conventions used throughout:

* **depth**: a root has depth 0, its children depth 1, ... Depth is counted from the
  root of the file that was read: the Allen JSON distributed with ClearMap wraps the
  Allen tree in an extra ``universe`` node (id 0), so there ``root``/``brain`` (997) has
  depth 1, while in a BrainGlobe ``structures.json`` 997 is the root (depth 0).
* **path(id)**: ids from the root down to ``id``, both included (BrainGlobe's
  ``structure_id_path``).
* **ancestors(id)**: ids from the parent up to the root — *parent first, root last*,
  ``id`` itself excluded.
* **descendants(id)**: every id below ``id`` (depth-first, in file order), ``id``
  itself excluded unless ``include_self=True``.
* **ancestor_at_depth(id, d)**: the ancestor of ``id`` at depth ``d``; ``id`` itself
  when ``id`` is at depth ``d`` or shallower (it has no ancestor that deep).
* Label ``0`` in a volume means background. It is a region only when the file says so
  (the ClearMap Allen JSON has ``0 = universe``; a BrainGlobe file has no 0).

Vectorised helpers (:meth:`Ontology.map_to_depth`, :meth:`Ontology.contains`) build a
lookup table once and index it, so whole label volumes are mapped without Python loops.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.errors import InputFileError

RGB = tuple[int, int, int]
DEFAULT_RGB: RGB = (128, 128, 128)
"""Colour given to a region whose file entry has none."""

# Labels below this are looked up in a dense table (8 MB of int64); larger ids (the Allen
# CCF has a few around 6e8) go through a sorted search on the few voxels that carry them.
_DENSE_LIMIT = 1 << 20
_CHUNK = 1 << 22  # labels per vectorised pass


@dataclass(frozen=True)
class Region:
    """One node of the ontology.

    Parameters
    ----------
    id : int
        Region id (the label in the annotation volume).
    acronym : str
        Short name, e.g. ``"CTX"``.
    name : str
        Full name.
    parent_id : int or None
        Parent's id; None for a root.
    rgb : tuple of int, optional
        Display colour (r, g, b), each 0-255.
    """

    id: int
    acronym: str
    name: str
    parent_id: int | None
    rgb: RGB = DEFAULT_RGB


class IdTable:
    """Vectorised map from integer ids to values: dense table for small ids, sorted search for the rest.

    Parameters
    ----------
    keys : iterable of int
        Ids.
    values : iterable of int
        Value of each id.
    dtype : numpy dtype, optional
        Dtype of the values.

    Examples
    --------
    >>> table = IdTable([1, 5, 10**9], [10, 50, 7])
    >>> values, found = table.apply(np.array([1, 2, 10**9]))
    >>> values.tolist(), found.tolist()
    ([10, 0, 7], [True, False, True])
    """

    def __init__(self, keys: Iterable[int], values: Iterable[int], dtype=np.int64):
        keys = np.asarray(list(keys), dtype=np.int64)
        values = np.asarray(list(values), dtype=dtype)
        small = (keys >= 0) & (keys < _DENSE_LIMIT)
        size = int(keys[small].max()) + 1 if small.any() else 1
        self.dense_values = np.zeros(size, dtype=dtype)
        self.dense_found = np.zeros(size, dtype=bool)
        self.dense_values[keys[small]] = values[small]
        self.dense_found[keys[small]] = True
        order = np.argsort(keys[~small])
        self.big_keys = keys[~small][order]
        self.big_values = values[~small][order]
        self.dtype = dtype

    def apply(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Look up every label.

        Parameters
        ----------
        labels : array_like of int
            Ids, any shape (e.g. a whole label volume).

        Returns
        -------
        values : ndarray
            Value of each label (0 where not found), shaped like ``labels``.
        found : ndarray of bool
            Whether each label is a key, shaped like ``labels``.

        Raises
        ------
        TypeError
            If ``labels`` is not an integer array.
        """
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"label arrays must be integers, got dtype {labels.dtype}")
        flat = labels.reshape(-1)
        values = np.empty(flat.size, dtype=self.dtype)
        found = np.empty(flat.size, dtype=bool)
        for start in range(0, flat.size, _CHUNK):  # bounded temporaries for whole volumes
            stop = min(start + _CHUNK, flat.size)
            values[start:stop], found[start:stop] = self._apply_flat(flat[start:stop])
        return values.reshape(labels.shape), found.reshape(labels.shape)

    def _apply_flat(self, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.dense_values.size
        in_dense = lab < n if lab.dtype.kind == "u" else (lab >= 0) & (lab < n)
        safe = np.where(in_dense, lab, 0).astype(np.intp)  # intp indices gather much faster
        values = self.dense_values[safe]
        found = self.dense_found[safe]
        found &= in_dense
        rest = np.flatnonzero(~in_dense)  # the few large (or negative) labels
        if rest.size:
            other = lab[rest].astype(np.int64)
            values[rest] = 0
            if self.big_keys.size:
                pos = np.clip(np.searchsorted(self.big_keys, other), 0, self.big_keys.size - 1)
                hit = self.big_keys[pos] == other
                values[rest] = np.where(hit, self.big_values[pos], 0)
                found[rest] = hit
        return values, found


class Ontology:
    """An atlas region tree (a forest of :class:`Region` nodes).

    Build it from :class:`Region` objects or with a reader: :meth:`from_allen_json`,
    :meth:`from_brainglobe`, :meth:`from_allen_csv`, :meth:`from_file`. See the module
    docstring for the conventions (depth, path, ancestors, descendants).

    Parameters
    ----------
    regions : iterable of Region
        The nodes, in file order.
    source : str, optional
        Names the file in error messages.

    Raises
    ------
    InputFileError
        Naming ``source``, for a repeated id, a parent id that is not in the ontology, or
        a cycle of parent links.

    Examples
    --------
    >>> onto = Ontology([Region(997, "root", "root", None), Region(8, "grey", "Grey matter", 997),
    ...                  Region(688, "CTX", "Cerebral cortex", 8), Region(549, "TH", "Thalamus", 8)])
    >>> onto.path(688), onto.ancestors(688), onto.depth(688)
    ((997, 8, 688), [8, 997], 2)
    >>> onto.descendants(997), onto.children(8)
    ([8, 688, 549], [688, 549])
    >>> onto.acronym(549), onto.name(549), onto.lookup_acronym("TH")
    ('TH', 'Thalamus', 549)
    >>> onto.map_to_depth(np.array([[0, 688], [549, 997]]), depth=1).tolist()  # 0 is not a region: kept
    [[0, 8], [8, 997]]
    """

    def __init__(self, regions: Iterable[Region], source: str = "ontology"):
        self.source = str(source)
        self._regions: dict[int, Region] = {}
        for r in regions:
            if r.id in self._regions:
                raise InputFileError(f"{self.source}: region id {r.id} appears more than once")
            self._regions[r.id] = r
        self._children: dict[int, list[int]] = {i: [] for i in self._regions}
        roots = []
        for r in self._regions.values():
            if r.parent_id is None:
                roots.append(r.id)
            elif r.parent_id not in self._regions:
                raise InputFileError(
                    f"{self.source}: region {r.id} ({r.acronym}) has parent id {r.parent_id}, "
                    "which is not in the ontology"
                )
            else:
                self._children[r.parent_id].append(r.id)
        self._roots = tuple(roots)
        self._path: dict[int, tuple[int, ...]] = {}
        stack = [(rid, (rid,)) for rid in reversed(roots)]
        while stack:
            rid, path = stack.pop()
            self._path[rid] = path
            stack.extend((c, path + (c,)) for c in reversed(self._children[rid]))
        if len(self._path) != len(self._regions):
            stuck = sorted(set(self._regions) - set(self._path))
            raise InputFileError(
                f"{self.source}: parent links form a cycle (no root above ids {stuck[:10]}"
                f"{' ...' if len(stuck) > 10 else ''})"
            )
        self._by_acronym: dict[str, list[int]] = {}
        for r in self._regions.values():
            self._by_acronym.setdefault(r.acronym, []).append(r.id)
        self._depth_tables: dict[int, IdTable] = {}
        self._known: IdTable | None = None

    # -- basic access ------------------------------------------------------------------
    @property
    def ids(self) -> tuple[int, ...]:
        """All region ids, in file order."""
        return tuple(self._regions)

    @property
    def roots(self) -> tuple[int, ...]:
        """Ids of the regions without a parent, in file order."""
        return self._roots

    def __len__(self) -> int:
        return len(self._regions)

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions.values())

    def __contains__(self, region_id: object) -> bool:
        try:
            return int(region_id) in self._regions  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    def __getitem__(self, region_id: int) -> Region:
        try:
            return self._regions[int(region_id)]
        except KeyError:
            raise KeyError(f"region id {region_id} is not in the ontology ({self.source})") from None

    def get(self, region_id: int, default: Region | None = None) -> Region | None:
        """The region with this id, or ``default`` when absent.

        Parameters
        ----------
        region_id : int
            Region id.
        default : Region or None, optional
            Returned when the id is not in the ontology.

        Returns
        -------
        Region or None
        """
        return self._regions.get(int(region_id), default)

    def acronym(self, region_id: int) -> str:
        """The acronym of a region.

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        str

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        return self[region_id].acronym

    def name(self, region_id: int) -> str:
        """The full name of a region.

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        str

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        return self[region_id].name

    def colour(self, region_id: int) -> RGB:
        """The display colour of a region.

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        tuple of int
            (r, g, b), each 0-255.

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        return self[region_id].rgb

    def parent(self, region_id: int) -> int | None:
        """The parent of a region.

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        int or None
            Parent id; None for a root.

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        return self[region_id].parent_id

    def children(self, region_id: int) -> list[int]:
        """The direct children of a region, in file order.

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        list of int

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        self[region_id]
        return list(self._children[int(region_id)])

    def path(self, region_id: int) -> tuple[int, ...]:
        """Ids from the root down to ``region_id`` (both included; BrainGlobe's ``structure_id_path``).

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        tuple of int

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        self[region_id]
        return self._path[int(region_id)]

    def ancestors(self, region_id: int) -> list[int]:
        """Ids from the parent up to the root: parent first, root last; self excluded.

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        list of int

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        return list(reversed(self.path(region_id)[:-1]))

    def depth(self, region_id: int) -> int:
        """Number of ancestors: a root has depth 0.

        Parameters
        ----------
        region_id : int
            Region id.

        Returns
        -------
        int

        Raises
        ------
        KeyError
            If the id is not in the ontology.
        """
        return len(self.path(region_id)) - 1

    @property
    def max_depth(self) -> int:
        """Depth of the deepest region (0 when every region is a root)."""
        return max(len(p) for p in self._path.values()) - 1

    def descendants(self, region_id: int, include_self: bool = False) -> list[int]:
        """Every id below ``region_id`` (depth-first, file order).

        Parameters
        ----------
        region_id : int
            Region id.
        include_self : bool, optional
            Put ``region_id`` itself first.

        Returns
        -------
        list of int

        Raises
        ------
        KeyError
            If the id is not in the ontology.

        Examples
        --------
        >>> onto = Ontology([Region(997, "root", "root", None), Region(8, "grey", "Grey matter", 997),
        ...                  Region(688, "CTX", "Cerebral cortex", 8), Region(549, "TH", "Thalamus", 8)])
        >>> onto.descendants(8), onto.descendants(8, include_self=True)
        ([688, 549], [8, 688, 549])
        """
        self[region_id]
        out: list[int] = [int(region_id)] if include_self else []
        stack = list(reversed(self._children[int(region_id)]))
        while stack:
            rid = stack.pop()
            out.append(rid)
            stack.extend(reversed(self._children[rid]))
        return out

    def ancestor_at_depth(self, region_id: int, depth: int) -> int:
        """The ancestor of ``region_id`` at ``depth`` (root = 0).

        Parameters
        ----------
        region_id : int
            Region id.
        depth : int
            Depth wanted, >= 0.

        Returns
        -------
        int
            The ancestor's id; ``region_id`` itself when it is at that depth or shallower.

        Raises
        ------
        ValueError
            If ``depth`` is negative.
        KeyError
            If the id is not in the ontology.

        Examples
        --------
        >>> onto = Ontology([Region(997, "root", "root", None), Region(8, "grey", "Grey matter", 997),
        ...                  Region(688, "CTX", "Cerebral cortex", 8), Region(549, "TH", "Thalamus", 8)])
        >>> onto.ancestor_at_depth(688, 1), onto.ancestor_at_depth(688, 0), onto.ancestor_at_depth(8, 2)
        (8, 997, 8)
        """
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        p = self.path(region_id)
        return p[depth] if depth < len(p) else p[-1]

    def lookup_acronym(self, acronym: str) -> int:
        """Find the id with this acronym (exact, case-sensitive).

        Parameters
        ----------
        acronym : str
            Acronym, e.g. ``"CTX"``.

        Returns
        -------
        int

        Raises
        ------
        KeyError
            When absent or when several regions share it (the old Allen CSV repeats ``NoL``).
        """
        ids = self._by_acronym.get(acronym)
        if not ids:
            raise KeyError(f"acronym {acronym!r} is not in the ontology ({self.source})")
        if len(ids) > 1:
            raise KeyError(f"acronym {acronym!r} is ambiguous in {self.source}: ids {ids}")
        return ids[0]

    def to_frame(self) -> pd.DataFrame:
        """Tabulate the ontology, one row per region in file order.

        Returns
        -------
        pandas.DataFrame
            Columns id, acronym, name, parent_id (nullable Int64), depth, r, g, b.

        Examples
        --------
        >>> onto = Ontology([Region(997, "root", "root", None), Region(8, "grey", "Grey matter", 997),
        ...                  Region(688, "CTX", "Cerebral cortex", 8), Region(549, "TH", "Thalamus", 8)])
        >>> onto.to_frame()[["id", "acronym", "depth"]].values.tolist()
        [[997, 'root', 0], [8, 'grey', 1], [688, 'CTX', 2], [549, 'TH', 2]]
        """
        regs = list(self._regions.values())
        return pd.DataFrame(
            {
                "id": np.array([r.id for r in regs], dtype=np.int64),
                "acronym": [r.acronym for r in regs],
                "name": [r.name for r in regs],
                "parent_id": pd.array([r.parent_id for r in regs], dtype="Int64"),
                "depth": np.array([len(self._path[r.id]) - 1 for r in regs], dtype=np.int64),
                "r": np.array([r.rgb[0] for r in regs], dtype=np.uint8),
                "g": np.array([r.rgb[1] for r in regs], dtype=np.uint8),
                "b": np.array([r.rgb[2] for r in regs], dtype=np.uint8),
            }
        )

    # -- vectorised label helpers -----------------------------------------------------
    def contains(self, labels: np.ndarray) -> np.ndarray:
        """Tell which labels are region ids of this ontology (vectorised).

        Parameters
        ----------
        labels : array_like of int
            Labels, any shape (e.g. a whole annotation volume).

        Returns
        -------
        ndarray of bool
            Shaped like ``labels``.

        Raises
        ------
        TypeError
            If ``labels`` is not an integer array.

        Examples
        --------
        >>> onto = Ontology([Region(997, "root", "root", None), Region(8, "grey", "Grey matter", 997),
        ...                  Region(688, "CTX", "Cerebral cortex", 8), Region(549, "TH", "Thalamus", 8)])
        >>> onto.contains(np.array([0, 8, 688, 5])).tolist()
        [False, True, True, False]
        """
        if self._known is None:
            self._known = IdTable(self._regions, self._regions)
        return self._known.apply(np.asarray(labels))[1]

    def map_to_depth(self, labels: np.ndarray, depth: int, unknown: int | None = None) -> np.ndarray:
        """Replace every label by its ancestor at ``depth`` (see :meth:`ancestor_at_depth`), vectorised.

        Parameters
        ----------
        labels : array_like of int
            Labels, any shape (e.g. a whole annotation volume).
        depth : int
            Depth to collapse to, >= 0.
        unknown : int, optional
            Value for labels not in the ontology (e.g. background 0 of a BrainGlobe
            atlas); by default they are kept unchanged.

        Returns
        -------
        ndarray of int64
            Shaped like ``labels``.

        Raises
        ------
        ValueError
            If ``depth`` is negative.
        TypeError
            If ``labels`` is not an integer array.

        Examples
        --------
        >>> onto = Ontology([Region(997, "root", "root", None), Region(8, "grey", "Grey matter", 997),
        ...                  Region(688, "CTX", "Cerebral cortex", 8), Region(549, "TH", "Thalamus", 8)])
        >>> onto.map_to_depth(np.array([0, 688, 549, 997]), depth=1).tolist()
        [0, 8, 8, 997]
        >>> onto.map_to_depth(np.array([0, 688]), depth=1, unknown=-1).tolist()
        [-1, 8]
        """
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        table = self._depth_tables.get(depth)
        if table is None:
            table = IdTable(self._regions, [self.ancestor_at_depth(i, depth) for i in self._regions])
            self._depth_tables[depth] = table
        labels = np.asarray(labels)
        values, found = table.apply(labels)
        missing = ~found
        if missing.any():
            values[missing] = labels[missing] if unknown is None else unknown
        return values

    def __repr__(self) -> str:
        return f"Ontology({len(self)} regions, roots {list(self._roots)}, from {self.source})"

    # -- readers ----------------------------------------------------------------------------
    @classmethod
    def from_allen_json(cls, path: str | Path) -> Ontology:
        """Read an Allen structure graph JSON file.

        Nested ``children``, under ``msg[0]`` (Allen API / ClearMap), as a top-level list
        of root nodes, or as a bare root dict. A flat list of nodes linked by
        ``parent_structure_id`` also works. Within a nested tree the nesting defines the
        parent (ClearMap's file nests ``997`` under ``universe`` but gives it
        ``parent_structure_id: null``). ``color_hex_triplet`` → rgb.

        Parameters
        ----------
        path : str or Path
            JSON file.

        Returns
        -------
        Ontology

        Raises
        ------
        InputFileError
            If the file is missing, not JSON, or not a structure graph.
        """
        path = Path(path)
        data = _read_json(path)
        if isinstance(data, dict) and "msg" in data:
            nodes = data["msg"]
        elif isinstance(data, dict) and "id" in data:
            nodes = [data]
        else:
            nodes = data
        if not isinstance(nodes, list) or not nodes:
            raise InputFileError(
                f"{path}: expected an Allen structure graph (a root node, a list of nodes, "
                "or {'msg': [root]}), found no structure nodes"
            )
        regions: list[Region] = []
        stack: list[tuple[Any, int | None, bool]] = [(n, None, False) for n in reversed(nodes)]
        while stack:
            node, nest_parent, nested = stack.pop()
            rid, acronym = _id_and_acronym(node, path)
            if nested:
                parent = nest_parent
            else:
                parent = node.get("parent_structure_id")
                parent = None if parent is None else _as_int(parent, "parent_structure_id", path, rid)
            rgb = _hex_rgb(node.get("color_hex_triplet"), path, rid)
            regions.append(Region(rid, acronym, str(node.get("name") or acronym), parent, rgb))
            children = node.get("children") or []
            if not isinstance(children, list):
                raise InputFileError(f"{path}: 'children' of region {rid} must be a list")
            stack.extend((c, rid, True) for c in reversed(children))
        return cls(regions, source=str(path))

    @classmethod
    def from_brainglobe(cls, path: str | Path) -> Ontology:
        """Read a BrainGlobe ``structures.json``.

        Parameters
        ----------
        path : str or Path
            JSON list of {id, acronym, name, structure_id_path (root ... id), rgb_triplet}.

        Returns
        -------
        Ontology

        Raises
        ------
        InputFileError
            If the file is missing, not JSON, or an entry is malformed.
        """
        path = Path(path)
        data = _read_json(path)
        if not isinstance(data, list):
            raise InputFileError(f"{path}: expected a list of structures (BrainGlobe structures.json)")
        regions = []
        for node in data:
            rid, acronym = _id_and_acronym(node, path)
            sip = node.get("structure_id_path")
            if not isinstance(sip, list) or not sip or _as_int(sip[-1], "structure_id_path", path, rid) != rid:
                raise InputFileError(
                    f"{path}: region {rid} needs 'structure_id_path' ending with its own id, got {sip!r}"
                )
            parent = _as_int(sip[-2], "structure_id_path", path, rid) if len(sip) > 1 else None
            rgb = node.get("rgb_triplet")
            rgb = DEFAULT_RGB if rgb is None else _rgb3(rgb, path, rid)
            regions.append(Region(rid, acronym, str(node.get("name") or acronym), parent, rgb))
        return cls(regions, source=str(path))

    @classmethod
    def from_allen_csv(cls, path: str | Path) -> Ontology:
        """Read a flat Allen table (ClearMap 1's ``ARA2_annotation_info_collapse.csv``).

        Parameters
        ----------
        path : str or Path
            CSV with columns id, name, acronym, red, green, blue, parent_id (empty for a
            root); other columns are ignored.

        Returns
        -------
        Ontology

        Raises
        ------
        InputFileError
            If the file is missing, unreadable, lacks a column or has a malformed row.
        """
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: ontology file not found")
        try:
            df = pd.read_csv(path)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise InputFileError(f"{path}: not a readable CSV table: {exc}") from None
        missing = [c for c in ("id", "acronym", "parent_id") if c not in df.columns]
        if missing:
            raise InputFileError(
                f"{path}: missing column(s) {', '.join(missing)} "
                "(expected id,name,acronym,red,green,blue,...,parent_id)"
            )
        regions = []
        for i, row in enumerate(df.to_dict("records")):
            if pd.isna(row["id"]) or pd.isna(row["acronym"]) or str(row["acronym"]) == "":
                raise InputFileError(f"{path}: row {i + 2} has no id or no acronym")
            rid = _as_int(row["id"], "id", path, row["id"])
            parent = None if pd.isna(row["parent_id"]) else _as_int(row["parent_id"], "parent_id", path, rid)
            if all(c in row and not pd.isna(row[c]) for c in ("red", "green", "blue")):
                rgb = _rgb3([row["red"], row["green"], row["blue"]], path, rid)
            else:
                rgb = DEFAULT_RGB
            name = row.get("name")
            regions.append(
                Region(rid, str(row["acronym"]), str(name) if not pd.isna(name) else str(row["acronym"]), parent, rgb)
            )
        return cls(regions, source=str(path))

    @classmethod
    def from_file(cls, path: str | Path) -> Ontology:
        """Read an ontology in any of the three formats, chosen from the content.

        ``.csv`` → :meth:`from_allen_csv`; JSON whose entries carry ``structure_id_path``
        → :meth:`from_brainglobe`; other JSON → :meth:`from_allen_json`.

        Parameters
        ----------
        path : str or Path
            Ontology file.

        Returns
        -------
        Ontology

        Raises
        ------
        InputFileError
            If the file is missing or malformed.
        """
        path = Path(path)
        if path.suffix.lower() == ".csv":
            return cls.from_allen_csv(path)
        data = _read_json(path)
        if isinstance(data, list) and data and isinstance(data[0], dict) and "structure_id_path" in data[0]:
            return cls.from_brainglobe(path)
        return cls.from_allen_json(path)


# -- parsing helpers -----------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InputFileError(f"{path}: ontology file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not valid JSON: {exc}") from None


def _as_int(value: Any, key: str, path: Path, rid: Any) -> int:
    if isinstance(value, bool):
        raise InputFileError(f"{path}: region {rid}: {key} must be an integer, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputFileError(f"{path}: region {rid}: {key} must be an integer, got {value!r}") from None
    if not np.isfinite(f) or f != int(f):
        raise InputFileError(f"{path}: region {rid}: {key} must be an integer, got {value!r}")
    return int(f)


def _id_and_acronym(node: Any, path: Path) -> tuple[int, str]:
    if not isinstance(node, Mapping):
        raise InputFileError(f"{path}: expected a structure node (a JSON object), got {str(node)[:60]!r}")
    if node.get("id") is None:
        raise InputFileError(f"{path}: a structure node has no 'id' (acronym {node.get('acronym')!r})")
    rid = _as_int(node["id"], "id", path, node.get("acronym"))
    acronym = node.get("acronym")
    if not isinstance(acronym, str) or not acronym:
        raise InputFileError(f"{path}: region {rid} has no 'acronym'")
    return rid, acronym


def _hex_rgb(value: Any, path: Path, rid: int) -> RGB:
    if value is None or value == "":
        return DEFAULT_RGB
    s = str(value).lstrip("#")
    try:
        if len(s) != 6:
            raise ValueError
        return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))
    except ValueError:
        raise InputFileError(f"{path}: region {rid}: color_hex_triplet {value!r} is not 6 hex digits") from None


def _rgb3(value: Any, path: Path, rid: int) -> RGB:
    try:
        vals = [int(v) for v in value]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 3 or any(not 0 <= v <= 255 for v in vals):
        raise InputFileError(f"{path}: region {rid}: colour must be three integers 0-255, got {value!r}")
    return (vals[0], vals[1], vals[2])
