"""A ClickPoints-compatible project store: read and write ``.cdb`` files (SQLite, schema 22).

:class:`Project` is shaped like ClickPoints' ``DataFile`` where that is natural (modes
``"r"``, ``"r+"``, ``"w"``; marker types, markers, tracks, lines, rectangles, ellipses,
polygons, masks, annotations, tags, offsets, options), written with the standard library's
``sqlite3``. Coordinates inside :class:`Project` are ClickPoints' own (stored) coordinates;
:func:`markers_to_frame` and :func:`frame_to_markers` convert to and from spimflow's
voxel-centre convention (see :mod:`spimflow.annotate.coords`).

A volume is a sequence of planes: one ``image`` row per z plane with ``frame`` =
``sort_index`` = z (:meth:`Project.add_volume_planes`); wherever a method takes ``z=`` it
means that plane (``sort_index``) in a layer (by default the layer named ``"default"``,
else the first layer).

Every write runs in one transaction (``BEGIN IMMEDIATE``): a bulk call lands completely or
not at all, also when the process is killed, and writers in several processes wait for one
another (WAL journal, busy timeout). Rows a call does not address are never changed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.annotate import schema
from spimflow.annotate.coords import CLICKPOINTS_PIXEL_OFFSET, clickpoints_to_voxel, voxel_to_clickpoints
from spimflow.annotate.errors import AnnotationError, NotAProjectError, ReadOnlyProjectError
from spimflow.annotate.masks import decode_mask, encode_mask
from spimflow.annotate.smarttext import render_text, resolve_text
from spimflow.io.atomic import atomic_path, claimed_temporary

__all__ = [
    "CLICKPOINTS_PIXEL_OFFSET",
    "DEFAULT_LAYER",
    "Project",
    "frame_to_markers",
    "markers_to_frame",
    "render_text",
    "resolve_text",
]

#: Layer that ``z=`` refers to when no layer is given (ClickPoints' own default name).
DEFAULT_LAYER = "default"
#: Colours given to new marker and mask types when none is asked for.
PALETTE = ("#FF0000", "#00FF00", "#0000FF", "#FFFF00", "#FF00FF", "#00FFFF", "#FF8000", "#8000FF")
#: Rows per ``executemany`` call in bulk writes (all chunks are in one transaction).
DEFAULT_CHUNK = 50_000

_SHAPE_COLUMNS = {
    "line": ("x1", "y1", "x2", "y2"),
    "rectangle": ("x", "y", "width", "height"),
    "ellipse": ("x", "y", "width", "height", "angle"),
}


# ----------------------------------------------------------------------------- helpers


def normalize_color(color: str | Sequence[int]) -> str:
    """Colour as ClickPoints stores it: ``"#RRGGBB"`` (or ``"#RRGGBBAA"``), upper case.

    Parameters
    ----------
    color : str or sequence of int
        ``"#ff0000"``, ``"FF0000"`` or ``(255, 0, 0)`` (3 or 4 values 0..255).

    Returns
    -------
    str
    """
    if isinstance(color, str):
        digits = color.strip().lstrip("#")
        if len(digits) not in (6, 8) or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise AnnotationError(f"{color!r} is not a colour (#RRGGBB or #RRGGBBAA)")
        return "#" + digits.upper()
    values = [int(v) for v in color]
    if len(values) not in (3, 4) or any(not 0 <= v <= 255 for v in values):
        raise AnnotationError(f"{color!r} is not a colour (3 or 4 values 0..255)")
    return "#" + "".join(f"{v:02X}" for v in values)


def _style(style: Any) -> str | None:
    if style is None or (isinstance(style, float) and style != style):
        return None
    if isinstance(style, dict):
        return json.dumps(style)
    return str(style)


def _text(text: Any) -> str | None:
    if text is None or (isinstance(text, float) and text != text) or text is pd.NA:
        return None
    return str(text)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bytes, dict)) or np.ndim(value) == 0


def _column(value: Any, n: int, name: str, convert: Callable[[Any], Any] = lambda v: v) -> Iterable:
    """A per-row column from a scalar (repeated) or a sequence of length n."""
    if _is_scalar(value):
        return itertools.repeat(convert(value.item() if isinstance(value, np.generic) else value), n)
    values = value.tolist() if isinstance(value, (np.ndarray, pd.Series, pd.Index)) else list(value)
    if len(values) != n:
        raise AnnotationError(f"{name} has {len(values)} values for {n} rows")
    return [convert(v) for v in values]


def _int_or_none(v: Any) -> int | None:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    return int(v)


def _json_list(values: Iterable) -> str:
    return json.dumps([v.item() if isinstance(v, np.generic) else v for v in values])


def _timestamp_to_db(ts: Any) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, (_dt.datetime, pd.Timestamp)):
        return pd.Timestamp(ts).to_pydatetime().isoformat(sep=" ")
    return str(ts)


def _timestamp_from_db(value: Any) -> Any:
    if value is None:
        return None
    try:
        return _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return value


def _as_values(value: Any) -> list:
    if _is_scalar(value):
        return [value.item() if isinstance(value, np.generic) else value]
    return [v.item() if isinstance(v, np.generic) else v for v in value]


def _connect(path: Path, readonly: bool, timeout: float) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    return sqlite3.connect(str(path), timeout=timeout, isolation_level=None)


def _remove_journals(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _init_file(path: Path) -> None:
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        schema.create_schema(conn)
    finally:
        conn.close()


def _create_file(path: Path, replace: bool = True) -> None:
    """Write an empty version-22 project at ``path`` (a temporary sibling, then renamed or linked).

    With ``replace=False`` an existing file wins: the new file is linked into place only if
    there is none, so two processes creating the same project at once end up sharing one.
    """
    if path.is_dir():
        raise NotAProjectError(f"{path}: is a directory, not a ClickPoints project file")
    if replace:
        with atomic_path(path) as tmp:
            _init_file(tmp)
            _remove_journals(path)  # a stale WAL of a replaced file must not be replayed into the new one
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with claimed_temporary(path) as tmp:
        try:
            _init_file(tmp)
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                if not path.exists():
                    os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _inspect(path: Path, timeout: float) -> tuple[int, set[str], list[str], list[str]]:
    """Version, tables, missing tables and missing columns of a file, read without writing."""
    try:
        conn = _connect(path, True, timeout)
    except sqlite3.Error as exc:
        raise NotAProjectError(f"{path}: cannot be opened as an SQLite database ({exc})") from exc
    try:
        try:
            tables = set(schema.table_columns(conn))
        except sqlite3.DatabaseError as exc:
            raise NotAProjectError(
                f"{path}: is not a ClickPoints project (.cdb): not an SQLite database ({exc})"
            ) from exc
        if "meta" not in tables:
            raise NotAProjectError(
                f"{path}: is an SQLite database but not a ClickPoints project (it has no 'meta' table)"
            )
        try:
            version = schema.read_version(conn)
        except ValueError as exc:
            raise NotAProjectError(f"{path}: is not a ClickPoints project: its meta 'version' is not a number") from exc
        if version is None:
            raise NotAProjectError(f"{path}: is not a ClickPoints project: its 'meta' table has no 'version' row")
        missing_tables, missing_columns = schema.verify_schema(conn)
    except sqlite3.DatabaseError as exc:
        raise NotAProjectError(f"{path}: cannot be read as a ClickPoints project ({exc})") from exc
    finally:
        conn.close()
    return version, tables, missing_tables, missing_columns


# ----------------------------------------------------------------------------- Project


class Project:
    """A ClickPoints project file (``.cdb``), opened for reading or writing.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.cdb`` file.
    mode : {"r", "r+", "w"}
        ``"r"``: read only (the file must exist). ``"r+"``: read and write; a missing file
        is created. ``"w"``: a new, empty project replaces any existing file (do not use
        while another process has the file open).
    timeout : float
        Seconds to wait for another process's write transaction before giving up.

    Notes
    -----
    A project whose schema version is not 22 (older or newer ClickPoints) is opened read
    only whatever the mode: reading works as far as its tables allow, every write raises
    :class:`ReadOnlyProjectError` and the file is never modified. ClickPoints 1.10 itself
    migrates an older file when it opens it.
    """

    TYPE_MARKER = schema.TYPE_MARKER
    TYPE_RECT = schema.TYPE_RECT
    TYPE_LINE = schema.TYPE_LINE
    TYPE_TRACK = schema.TYPE_TRACK
    TYPE_ELLIPSE = schema.TYPE_ELLIPSE
    TYPE_POLYGON = schema.TYPE_POLYGON

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, timeout: float = 30.0):
        if mode not in ("r", "r+", "w"):
            raise ValueError(f"mode must be 'r', 'r+' or 'w', not {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.timeout = float(timeout)
        self._conn: sqlite3.Connection | None = None
        self._savepoints = 0
        if mode == "w":
            _create_file(self.path)
        elif mode == "r+" and not self.path.exists() and not self.path.is_symlink():
            _create_file(self.path, replace=False)
        elif not self.path.exists():
            raise NotAProjectError(f"{self.path}: no such ClickPoints project file")
        elif self.path.is_dir():
            raise NotAProjectError(f"{self.path}: is a directory, not a ClickPoints project file")
        version, tables, missing_tables, missing_columns = _inspect(self.path, self.timeout)
        self.version = version
        self.read_only_reason: str | None = None
        if version != schema.SCHEMA_VERSION:
            older = version < schema.SCHEMA_VERSION
            how = (
                "an older ClickPoints; ClickPoints 1.10 migrates it when it opens it"
                if older
                else "a newer ClickPoints"
            )
            self.read_only_reason = (
                f"it has ClickPoints schema version {version}, spimflow writes version "
                f"{schema.SCHEMA_VERSION} only (written by {how}); it was opened read-only "
                "and has not been modified"
            )
        elif missing_columns:
            self.read_only_reason = (
                f"its tables lack columns of schema version {schema.SCHEMA_VERSION}: "
                f"{', '.join(missing_columns)}; it was opened read-only"
            )
        elif mode == "r":
            self.read_only_reason = "it was opened with mode='r'"
        try:
            if self.read_only_reason is None:
                self._conn = _connect(self.path, False, self.timeout)
                self._conn.execute("PRAGMA journal_mode = WAL")
                if missing_tables:  # as ClickPoints does on opening
                    schema.create_schema(self._conn)
                tables |= set(missing_tables)
            elif mode == "r" and version == schema.SCHEMA_VERSION and not missing_columns:
                # a normal connection that refuses writes: unlike a mode=ro one it removes the WAL side files
                # when it closes (and lets SQLite recover a WAL left by a killed writer)
                try:
                    self._conn = _connect(self.path, False, self.timeout)
                    self._conn.execute("PRAGMA query_only = ON")
                    self._conn.execute("SELECT COUNT(*) FROM meta").fetchone()
                except sqlite3.OperationalError:  # e.g. a read-only folder: no side files possible
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = _connect(self.path, True, self.timeout)
                    self._conn.execute("PRAGMA query_only = ON")
            else:  # another schema version: strictly read-only, the file is never touched
                self._conn = _connect(self.path, True, self.timeout)
                self._conn.execute("PRAGMA query_only = ON")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            self.close()
            raise AnnotationError(f"{self.path}: cannot open the project ({exc})") from exc
        self._tables = tables

    # -- opening and closing

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, timeout: float = 30.0) -> Project:
        """Open a project (see :class:`Project` for the modes).

        Parameters
        ----------
        path : str or os.PathLike
        mode : {"r", "r+", "w"}
        timeout : float

        Returns
        -------
        Project
        """
        return cls(path, mode, timeout=timeout)

    @classmethod
    def create(cls, path: str | os.PathLike, *, overwrite: bool = False, timeout: float = 30.0) -> Project:
        """Create a new, empty project and open it for writing.

        Parameters
        ----------
        path : str or os.PathLike
        overwrite : bool
            Replace an existing file; otherwise an existing file is an error.
        timeout : float

        Returns
        -------
        Project
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise AnnotationError(f"{path}: already exists (pass overwrite=True to replace it)")
        return cls(path, "w", timeout=timeout)

    @property
    def writable(self) -> bool:
        """True when writes are allowed (mode ``"r+"``/``"w"`` and schema version 22)."""
        return self.read_only_reason is None and self._conn is not None

    def close(self) -> None:
        """Close the connection (idempotent). An open transaction is rolled back."""
        if self._conn is not None:
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else ("read-write" if self.writable else "read-only")
        return f"Project({str(self.path)!r}, version={self.version}, {state})"

    # -- low level

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AnnotationError(f"{self.path}: the project is closed")
        return self._conn

    def _require_writable(self) -> sqlite3.Connection:
        conn = self._db()
        if self.read_only_reason is not None:
            raise ReadOnlyProjectError(f"{self.path}: cannot write: {self.read_only_reason}")
        return conn

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise AnnotationError(f"{self.path}: {exc}") from exc

    def _one(self, sql: str, params: Sequence = ()) -> tuple | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _next_id(self, table: str) -> int:
        return int(self._db().execute(f'SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"').fetchone()[0])

    def _has(self, table: str) -> bool:
        return table in self._tables

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Project]:
        """Group writes into one transaction: all land or none do.

        Nested use is allowed (savepoints). Waits up to ``timeout`` seconds for another
        process's write to finish.

        Yields
        ------
        Project
            This project.
        """
        conn = self._require_writable()
        if conn.in_transaction:
            self._savepoints += 1
            name = f"spimflow_{self._savepoints}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            conn.execute(f"RELEASE {name}")
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise AnnotationError(
                f"{self.path}: cannot start a write ({exc}; another process has held the "
                f"write lock for more than {self.timeout:g} s)"
            ) from exc
        try:
            yield self
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise AnnotationError(f"{self.path}: the write was refused and nothing was written ({exc})") from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- options and meta

    def set_option(self, key: str, value: Any) -> None:
        """Set a ClickPoints option (stored as ``str(value)``, as ClickPoints does).

        Parameters
        ----------
        key : str
        value : Any
            None deletes the option.
        """
        with self.transaction():
            conn = self._db()
            if value is None:
                conn.execute('DELETE FROM "option" WHERE key = ?', (key,))
            elif conn.execute('SELECT 1 FROM "option" WHERE key = ?', (key,)).fetchone():
                conn.execute('UPDATE "option" SET value = ? WHERE key = ?', (str(value), key))
            else:
                conn.execute('INSERT INTO "option" (key, value) VALUES (?, ?)', (key, str(value)))

    def get_option(self, key: str, default: Any = None) -> str | Any:
        """The stored text of an option, or ``default``.

        Parameters
        ----------
        key : str
        default : Any

        Returns
        -------
        str or Any
        """
        if not self._has("option"):
            return default
        row = self._one('SELECT value FROM "option" WHERE key = ?', (key,))
        return default if row is None else row[0]

    def get_options(self) -> dict[str, str | None]:
        """All stored options.

        Returns
        -------
        dict
        """
        if not self._has("option"):
            return {}
        return dict(self._rows('SELECT key, value FROM "option" ORDER BY id'))

    def get_meta(self) -> dict[str, str]:
        """The ``meta`` table (contains ``version``).

        Returns
        -------
        dict
        """
        return dict(self._rows("SELECT key, value FROM meta ORDER BY id"))

    # -- paths and layers

    def set_path(self, path: str | os.PathLike, *, absolute: bool = False) -> int:
        """Get or create a ``path`` row.

        Parameters
        ----------
        path : str or os.PathLike
            A folder. Stored relative to the project file's folder unless ``absolute``
            (as ClickPoints does).
        absolute : bool

        Returns
        -------
        int
            The path id.
        """
        text = os.fspath(path)
        if absolute:
            text = os.path.abspath(text)
        else:
            try:
                text = os.path.relpath(text, os.path.dirname(os.path.abspath(self.path)))
            except ValueError:  # another drive on Windows
                text = os.path.abspath(text)
        text = os.path.normpath(text)
        with self.transaction():
            conn = self._db()
            row = conn.execute("SELECT id FROM path WHERE path = ?", (text,)).fetchone()
            if row:
                return int(row[0])
            return int(conn.execute("INSERT INTO path (path) VALUES (?)", (text,)).lastrowid)

    def get_paths(self) -> pd.DataFrame:
        """All paths.

        Returns
        -------
        pandas.DataFrame
            Columns ``id``, ``path``.
        """
        return pd.DataFrame(self._rows("SELECT id, path FROM path ORDER BY id"), columns=["id", "path"])

    def set_layer(self, name: str, base_layer: str | int | None = None) -> int:
        """Get or create a layer.

        Parameters
        ----------
        name : str
        base_layer : str or int, optional
            The layer this one belongs to; a new layer without one is its own base (as in
            ClickPoints).

        Returns
        -------
        int
            The layer id.
        """
        with self.transaction():
            row = self._db().execute("SELECT id FROM layer WHERE name = ?", (name,)).fetchone()
            if row:
                return int(row[0])
            new_id = self._next_id("layer")
            base_id = new_id if base_layer is None else self._layer_id(base_layer)
            self._db().execute("INSERT INTO layer (id, name, base_layer_id) VALUES (?, ?, ?)", (new_id, name, base_id))
            return new_id

    def get_layers(self) -> pd.DataFrame:
        """All layers.

        Returns
        -------
        pandas.DataFrame
            Columns ``id``, ``name``, ``base_layer_id``.
        """
        return pd.DataFrame(
            self._rows("SELECT id, name, base_layer_id FROM layer ORDER BY id"), columns=["id", "name", "base_layer_id"]
        )

    def _layer_id(self, layer: str | int | None, create: bool = False) -> int | None:
        if layer is None:
            row = self._one("SELECT id FROM layer WHERE name = ?", (DEFAULT_LAYER,))
            if row is None:
                row = self._one("SELECT MIN(id) FROM layer")
                row = None if row is None or row[0] is None else row
            if row is None and create:
                return self.set_layer(DEFAULT_LAYER)
            return None if row is None else int(row[0])
        if isinstance(layer, (int, np.integer)):
            if self._one("SELECT id FROM layer WHERE id = ?", (int(layer),)) is None:
                raise AnnotationError(f"{self.path}: no layer with id {int(layer)}")
            return int(layer)
        row = self._one("SELECT id FROM layer WHERE name = ?", (str(layer),))
        if row is None:
            if create:
                return self.set_layer(str(layer))
            raise AnnotationError(f"{self.path}: no layer named {layer!r}")
        return int(row[0])

    # -- images

    def add_image(
        self,
        filename: str | os.PathLike,
        *,
        path: str | os.PathLike | None = None,
        frame: int = 0,
        sort_index: int | None = None,
        layer: str | int | None = None,
        width: int | None = None,
        height: int | None = None,
        timestamp: Any = None,
        external_id: int | None = None,
    ) -> int:
        """Get or create one ``image`` row (unique by filename, path and frame).

        Parameters
        ----------
        filename : str or os.PathLike
            File name; with a folder part when ``path`` is not given.
        path : str or os.PathLike, optional
            Its folder (stored relative to the project file).
        frame : int
            Frame within the file.
        sort_index : int, optional
            Position in the layer's time line (= z for spimflow); default: after the last.
        layer : str or int, optional
            Default: the ``"default"`` layer (created when missing).
        width, height : int, optional
        timestamp : datetime or str, optional
        external_id : int, optional

        Returns
        -------
        int
            The image id. An existing row keeps its values except those given here.
        """
        name = os.fspath(filename)
        folder = os.fspath(path) if path is not None else (os.path.dirname(name) or ".")
        name = os.path.basename(os.path.normpath(name))
        with self.transaction():
            conn = self._db()
            layer_id = self._layer_id(layer, create=True)
            path_id = self.set_path(folder)
            row = conn.execute(
                "SELECT id FROM image WHERE filename = ? AND path_id = ? AND frame = ?", (name, path_id, int(frame))
            ).fetchone()
            values = {
                "sort_index": sort_index,
                "width": width,
                "height": height,
                "timestamp": _timestamp_to_db(timestamp),
                "external_id": external_id,
            }
            if row:
                updates = {k: v for k, v in values.items() if v is not None}
                if layer is not None:
                    updates["layer_id"] = layer_id
                if updates:
                    conn.execute(
                        "UPDATE image SET " + ", ".join(f"{k} = ?" for k in updates) + " WHERE id = ?",
                        (*updates.values(), row[0]),
                    )
                return int(row[0])
            if sort_index is None:
                last = conn.execute("SELECT MAX(sort_index) FROM image WHERE layer_id = ?", (layer_id,)).fetchone()[0]
                values["sort_index"] = 0 if last is None else int(last) + 1
            cur = conn.execute(
                "INSERT INTO image (filename, ext, frame, external_id, timestamp, sort_index, width, height, path_id, "
                "layer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    os.path.splitext(name)[1][:10],
                    int(frame),
                    values["external_id"],
                    values["timestamp"],
                    int(values["sort_index"]),
                    width,
                    height,
                    path_id,
                    layer_id,
                ),
            )
            return int(cur.lastrowid)

    def add_volume_planes(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        n_planes: int | None = None,
        *,
        layer: str | int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> np.ndarray:
        """Add one ``image`` row per z plane of a volume, with ``frame`` = ``sort_index`` = z.

        Parameters
        ----------
        source : str, os.PathLike or sequence of them
            One volume (an OME-Zarr folder, a multi-page TIFF, ...: every plane refers to it)
            or one file per plane, in z order.
        n_planes : int, optional
            Number of planes; required for one volume, checked for a list of files.
        layer : str or int, optional
            Default: the ``"default"`` layer (created when missing). Use one layer per
            channel.
        width, height : int, optional
            Plane size in pixels (x, y); lets :meth:`set_mask` check mask shapes.

        Returns
        -------
        numpy.ndarray
            Image ids, index = z. Rows that already exist (same file, folder and frame)
            are reused unchanged.
        """
        if isinstance(source, (str, os.PathLike)):
            if n_planes is None:
                raise AnnotationError(f"add_volume_planes({os.fspath(source)!r}): n_planes is needed for one volume")
            full = os.path.normpath(os.fspath(source))
            files = [(os.path.dirname(full) or ".", os.path.basename(full))] * int(n_planes)
        else:
            names = [os.path.normpath(os.fspath(s)) for s in source]
            if n_planes is not None and int(n_planes) != len(names):
                raise AnnotationError(f"add_volume_planes: {len(names)} files for n_planes={n_planes}")
            files = [(os.path.dirname(n) or ".", os.path.basename(n)) for n in names]
        ids = np.empty(len(files), dtype=np.int64)
        with self.transaction():
            conn = self._db()
            layer_id = self._layer_id(layer, create=True)
            path_ids: dict[str, int] = {}
            new_rows = []
            next_id = self._next_id("image")
            for z, (folder, name) in enumerate(files):
                if folder not in path_ids:
                    path_ids[folder] = self.set_path(folder)
                row = conn.execute(
                    "SELECT id FROM image WHERE filename = ? AND path_id = ? AND frame = ?", (name, path_ids[folder], z)
                ).fetchone()
                if row:
                    ids[z] = row[0]
                    continue
                ids[z] = next_id
                new_rows.append(
                    (next_id, name, os.path.splitext(name)[1][:10], z, z, width, height, path_ids[folder], layer_id)
                )
                next_id += 1
            conn.executemany(
                "INSERT INTO image (id, filename, ext, frame, sort_index, width, height, path_id, "
                "layer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )
        return ids

    def get_images(self, layer: str | int | None = None) -> pd.DataFrame:
        """Images (planes), optionally of one layer.

        Parameters
        ----------
        layer : str or int, optional
            Default: all layers.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, filename, ext, frame, external_id, timestamp, sort_index, width,
            height, path_id, path, layer_id, layer``, ordered by layer and sort_index.
        """
        where, params = "", ()
        if layer is not None:
            where, params = "WHERE i.layer_id = ?", (self._layer_id(layer),)
        cols = [
            "id",
            "filename",
            "ext",
            "frame",
            "external_id",
            "timestamp",
            "sort_index",
            "width",
            "height",
            "path_id",
            "path",
            "layer_id",
            "layer",
        ]
        rows = self._rows(
            "SELECT i.id, i.filename, i.ext, i.frame, i.external_id, i.timestamp, i.sort_index, i.width, i.height, "
            "i.path_id, p.path, i.layer_id, l.name FROM image i LEFT JOIN path p ON p.id = i.path_id "
            f"LEFT JOIN layer l ON l.id = i.layer_id {where} ORDER BY i.layer_id, i.sort_index, i.id",
            params,
        )
        frame = pd.DataFrame(rows, columns=cols)
        frame["timestamp"] = [_timestamp_from_db(v) for v in frame["timestamp"]]
        for col in ("external_id", "width", "height"):
            frame[col] = pd.array([_int_or_none(v) for v in frame[col]], dtype="Int64")
        return frame

    def image_ids(self, z: Any, layer: str | int | None = None, *, strict: bool = True) -> np.ndarray:
        """Image ids of z planes (``sort_index``) in a layer.

        Parameters
        ----------
        z : int or array_like
            Plane numbers; rounded to the nearest integer.
        layer : str or int, optional
            Default: the ``"default"`` layer, else the first layer.
        strict : bool
            Raise for a plane without image; otherwise its id is -1.

        Returns
        -------
        numpy.ndarray
            int64 ids, same shape as ``z`` (1D).
        """
        zi = np.rint(np.atleast_1d(np.asarray(z, dtype=np.float64))).astype(np.int64)
        layer_id = self._layer_id(layer)
        rows = (
            []
            if layer_id is None
            else self._rows(
                "SELECT sort_index, MIN(id) FROM image WHERE layer_id = ? GROUP BY sort_index ORDER BY sort_index",
                (layer_id,),
            )
        )
        keys = np.array([r[0] for r in rows], dtype=np.int64)
        ids = np.array([r[1] for r in rows], dtype=np.int64)
        if len(keys) == 0:
            found = np.zeros(zi.shape, dtype=bool)
            out = np.full(zi.shape, -1, dtype=np.int64)
        else:
            pos = np.clip(np.searchsorted(keys, zi), 0, len(keys) - 1)
            found = keys[pos] == zi
            out = np.where(found, ids[pos], -1)
        if strict and not found.all():
            missing = np.unique(zi[~found])
            raise AnnotationError(
                f"{self.path}: no image (plane) for z = {', '.join(map(str, missing[:8]))}"
                f"{' ...' if len(missing) > 8 else ''} in layer {layer if layer is not None else DEFAULT_LAYER!r}; "
                "add the planes first (Project.add_volume_planes)"
            )
        return out

    def _target_images(self, image: Any, z: Any, layer: Any, n: int) -> Iterable:
        if (image is None) == (z is None):
            raise AnnotationError("give exactly one of image= (image ids) or z= (planes)")
        if image is not None:
            return _column(image, n, "image", int)
        if _is_scalar(z):
            return itertools.repeat(int(self.image_ids(z, layer)[0]), n)
        ids = self.image_ids(z, layer)
        if len(ids) != n:
            raise AnnotationError(f"z has {len(ids)} values for {n} rows")
        return ids.tolist()

    def _one_image(self, image: Any, z: Any, layer: Any) -> int:
        return int(next(iter(self._target_images(image, z, layer, 1))))

    # -- marker types

    def set_marker_type(
        self,
        name: str,
        color: str | Sequence[int] | None = None,
        mode: int | None = None,
        style: str | dict | None = None,
        text: str | None = None,
        hidden: bool | None = None,
    ) -> int:
        """Create or update a marker type (unique by name).

        Parameters
        ----------
        name : str
        color : str or sequence of int, optional
            ``"#RRGGBB"``; a new type without one gets a colour of :data:`PALETTE`.
        mode : int, optional
            0 point, 1 rectangle, 2 line, 4 track, 8 ellipse, 16 polygon (default 0).
        style : str or dict, optional
            ClickPoints style (JSON text, a dict is encoded).
        text : str, optional
            Text shown with every marker of the type (SmartText, :func:`render_text`).
        hidden : bool, optional

        Returns
        -------
        int
            The type id. Arguments left None keep the stored values of an existing type.
        """
        with self.transaction():
            conn = self._db()
            row = conn.execute("SELECT id FROM markertype WHERE name = ?", (name,)).fetchone()
            values = {
                "color": None if color is None else normalize_color(color),
                "mode": None if mode is None else int(mode),
                "style": _style(style),
                "text": _text(text),
                "hidden": None if hidden is None else int(bool(hidden)),
            }
            if row:
                updates = {k: v for k, v in values.items() if v is not None}
                if updates:
                    conn.execute(
                        "UPDATE markertype SET " + ", ".join(f"{k} = ?" for k in updates) + " WHERE id = ?",
                        (*updates.values(), row[0]),
                    )
                return int(row[0])
            new_id = self._next_id("markertype")
            conn.execute(
                "INSERT INTO markertype (id, name, color, mode, style, text, hidden) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    name,
                    values["color"] or PALETTE[(new_id - 1) % len(PALETTE)],
                    values["mode"] or 0,
                    values["style"],
                    values["text"],
                    values["hidden"] or 0,
                ),
            )
            return new_id

    def get_marker_types(self) -> pd.DataFrame:
        """All marker types.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, name, color, mode, style, text, hidden`` (hidden as bool).
        """
        rows = self._rows("SELECT id, name, color, mode, style, text, hidden FROM markertype ORDER BY id")
        frame = pd.DataFrame(rows, columns=["id", "name", "color", "mode", "style", "text", "hidden"])
        frame["hidden"] = frame["hidden"].astype(bool)
        return frame

    def get_marker_type(self, type: str | int) -> dict | None:
        """One marker type by name or id, or None.

        Parameters
        ----------
        type : str or int

        Returns
        -------
        dict or None
        """
        col = "id" if isinstance(type, (int, np.integer)) else "name"
        row = self._one(
            f"SELECT id, name, color, mode, style, text, hidden FROM markertype WHERE {col} = ?",
            (int(type) if col == "id" else str(type),),
        )
        if row is None:
            return None
        return dict(zip(("id", "name", "color", "mode", "style", "text", "hidden"), row, strict=True)) | {
            "hidden": bool(row[6])
        }

    def remove_marker_type(self, type: str | int) -> int:
        """Delete a marker type with all its markers, tracks and shapes (ClickPoints cascades).

        Parameters
        ----------
        type : str or int

        Returns
        -------
        int
            1 if a type was deleted, else 0.
        """
        with self.transaction():
            col = "id" if isinstance(type, (int, np.integer)) else "name"
            return (
                self._db()
                .execute(f"DELETE FROM markertype WHERE {col} = ?", (int(type) if col == "id" else str(type),))
                .rowcount
            )

    def _type_map(self) -> tuple[dict[str, int], dict[int, int]]:
        rows = self._rows("SELECT id, name, mode FROM markertype")
        return {r[1]: int(r[0]) for r in rows}, {int(r[0]): int(r[2]) for r in rows}

    def _type_ids(self, type: Any, n: int) -> Iterable:
        names, modes = self._type_map()

        def one(value: Any) -> int | None:
            if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                return None
            if isinstance(value, (int, np.integer)):
                if int(value) not in modes:
                    raise AnnotationError(f"{self.path}: no marker type with id {int(value)}")
                return int(value)
            if str(value) not in names:
                raise AnnotationError(f"{self.path}: no marker type named {value!r} (create it with set_marker_type)")
            return names[str(value)]

        if _is_scalar(type):
            return itertools.repeat(one(type.item() if isinstance(type, np.generic) else type), n)
        values = list(type.tolist() if isinstance(type, (np.ndarray, pd.Series)) else type)
        if len(values) != n:
            raise AnnotationError(f"type has {len(values)} values for {n} rows")
        cache: dict[Any, int | None] = {}
        out = []
        for v in values:
            if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                out.append(None)
                continue
            key = (v.__class__, v)
            if key not in cache:
                cache[key] = one(v)
            out.append(cache[key])
        return out

    # -- filters shared by the readers and removers

    def _where(
        self,
        alias: str,
        *,
        ids: Any = None,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        track: Any = None,
        layer: Any = None,
    ) -> tuple[str, list]:
        clauses, params = [], []
        if ids is not None:
            clauses.append(f"{alias}.id IN (SELECT value FROM json_each(?))")
            params.append(_json_list(int(v) for v in _as_values(ids)))
        if image is not None:
            clauses.append(f"{alias}.image_id IN (SELECT value FROM json_each(?))")
            params.append(_json_list(int(v) for v in _as_values(image)))
        if z is not None:
            found = self.image_ids(_as_values(z), layer, strict=False)
            clauses.append(f"{alias}.image_id IN (SELECT value FROM json_each(?))")
            params.append(_json_list(int(v) for v in found if v >= 0))
        if type is not None:
            values = _as_values(type)
            numbers = [int(v) for v in values if isinstance(v, (int, np.integer))]
            names = [str(v) for v in values if not isinstance(v, (int, np.integer))]
            clauses.append(
                f"({alias}.type_id IN (SELECT value FROM json_each(?)) OR {alias}.type_id IN "
                "(SELECT id FROM markertype WHERE name IN (SELECT value FROM json_each(?))))"
            )
            params += [_json_list(numbers), _json_list(names)]
        if track is not None:
            clauses.append(f"{alias}.track_id IN (SELECT value FROM json_each(?))")
            params.append(_json_list(int(v) for v in _as_values(track)))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    # -- markers

    def set_markers(
        self,
        x: Any,
        y: Any,
        *,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        track: Any = None,
        style: Any = None,
        text: Any = None,
        processed: Any = 0,
        layer: str | int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Add many markers in one transaction (all or none).

        Every argument may be one value for all markers or one value per marker.

        Parameters
        ----------
        x, y : array_like
            Positions in stored ClickPoints coordinates (pixel centre at ``i + 0.5``; use
            :func:`frame_to_markers` for voxel coordinates).
        image : int or array_like, optional
            Image ids. Give this or ``z``.
        z : int or array_like, optional
            Planes (``sort_index``) in ``layer``.
        type : str, int or array_like, optional
            Marker type names or ids (must exist); tracked markers default to their
            track's type.
        track : int or array_like, optional
            Track ids (None: no track). A track holds at most one marker per image.
        style, text : str or array_like, optional
        processed : int or array_like
        layer : str or int, optional
        chunk_size : int
            Rows per ``executemany`` (all inside the one transaction).
        progress : callable, optional
            ``progress(done, total)`` after each chunk, inside the open transaction.

        Returns
        -------
        numpy.ndarray
            Ids of the new markers, in input order.
        """
        xs = np.asarray(x, dtype=np.float64).ravel()
        ys = np.asarray(y, dtype=np.float64).ravel()
        n = len(xs)
        if len(ys) != n:
            raise AnnotationError(f"x has {n} values but y has {len(ys)}")
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            raise AnnotationError("marker positions must be finite numbers")
        if n == 0:
            return np.empty(0, dtype=np.int64)
        with self.transaction():
            conn = self._db()
            images = self._target_images(image, z, layer, n)
            tracks = _column(track, n, "track", _int_or_none)
            types = self._type_ids(type, n)
            if track is not None:
                track_types = dict(self._rows("SELECT id, type_id FROM track"))
                tracks, types = list(tracks), list(types)
                for i, (tr, ty) in enumerate(zip(tracks, types, strict=True)):
                    if tr is not None and ty is None:
                        if tr not in track_types:
                            raise AnnotationError(f"{self.path}: no track with id {tr}")
                        types[i] = track_types[tr]
            start = self._next_id("marker")
            ids = np.arange(start, start + n, dtype=np.int64)
            rows = zip(
                ids.tolist(),
                images,
                xs.tolist(),
                ys.tolist(),
                types,
                _column(processed, n, "processed", int),
                tracks,
                _column(style, n, "style", _style),
                _column(text, n, "text", _text),
                strict=True,
            )
            sql = (
                "INSERT INTO marker (id, image_id, x, y, type_id, processed, track_id, style, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )
            done = 0
            step = max(1, int(chunk_size))
            while done < n:
                chunk = list(itertools.islice(rows, step))
                conn.executemany(sql, chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, n)
        return ids

    def set_marker(self, x: float, y: float, **kwargs: Any) -> int:
        """Add one marker; the arguments are those of :meth:`set_markers`.

        Returns
        -------
        int
            The marker id.
        """
        return int(self.set_markers([x], [y], **kwargs)[0])

    def update_markers(
        self,
        ids: Any,
        *,
        x: Any = None,
        y: Any = None,
        type: Any = None,
        style: Any = None,
        text: Any = None,
        processed: Any = None,
        image: Any = None,
    ) -> int:
        """Change fields of existing markers (None leaves a field unchanged).

        Parameters
        ----------
        ids : int or array_like
        x, y, type, style, text, processed : scalar or array_like, optional
        image : int or array_like, optional
            Image ids: moves markers to other images (planes).

        Returns
        -------
        int
            Number of markers changed.
        """
        id_list = [int(v) for v in _as_values(ids)]
        n = len(id_list)
        columns = {}
        if x is not None:
            columns["x"] = _column(x, n, "x", float)
        if y is not None:
            columns["y"] = _column(y, n, "y", float)
        if style is not None:
            columns["style"] = _column(style, n, "style", _style)
        if text is not None:
            columns["text"] = _column(text, n, "text", _text)
        if processed is not None:
            columns["processed"] = _column(processed, n, "processed", int)
        if image is not None:
            columns["image_id"] = _column(image, n, "image", int)
        with self.transaction():
            if type is not None:
                columns["type_id"] = self._type_ids(type, n)
            if not columns or not n:
                return 0
            sql = "UPDATE marker SET " + ", ".join(f"{c} = ?" for c in columns) + " WHERE id = ?"
            cur = self._db().executemany(sql, zip(*columns.values(), id_list, strict=True))
            return cur.rowcount

    def get_markers(
        self,
        *,
        ids: Any = None,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        track: Any = None,
        layer: str | int | None = None,
    ) -> pd.DataFrame:
        """Markers matching all given filters (each filter: one value or a list).

        Parameters
        ----------
        ids, image : int or array_like, optional
            Marker ids, image ids.
        z : int or array_like, optional
            Planes in ``layer``.
        type : str, int or array_like, optional
            Type names or ids.
        track : int or array_like, optional
            Track ids.
        layer : str or int, optional

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z, x, y, type_id, type, track_id, processed, style, text``
            (stored ClickPoints coordinates; ``z`` is the image's ``sort_index``), by id.
        """
        where, params = self._where("m", ids=ids, image=image, z=z, type=type, track=track, layer=layer)
        # numbers in one float64 block (fast), the mostly-NULL texts separately, names and planes by lookup
        rows = self._rows(
            "SELECT m.id, m.image_id, m.x, m.y, COALESCE(m.type_id, -1), COALESCE(m.track_id, -1), "
            f"m.processed FROM marker m{where} ORDER BY m.id",
            params,
        )
        num = np.array(rows, dtype=np.float64).reshape(-1, 7)
        ids_out = num[:, 0].astype(np.int64)
        texts = self._rows(
            f"SELECT m.id, m.style, m.text FROM marker m{where}"
            + (" AND" if where else " WHERE")
            + " (m.style IS NOT NULL OR m.text IS NOT NULL)",
            params,
        )
        style_col = np.full(len(ids_out), None, dtype=object)
        text_col = np.full(len(ids_out), None, dtype=object)
        if texts:
            pos = np.searchsorted(ids_out, np.array([r[0] for r in texts], dtype=np.int64))
            style_col[pos] = [r[1] for r in texts]
            text_col[pos] = [r[2] for r in texts]
        image_rows = np.array(self._rows("SELECT id, sort_index FROM image ORDER BY id"), dtype=np.int64).reshape(-1, 2)
        image_ids = num[:, 1].astype(np.int64)
        z_col = np.full(len(image_ids), -1, dtype=np.int64)  # -1: the image row is missing (foreign file)
        if len(image_rows):
            pos = np.searchsorted(image_rows[:, 0], image_ids).clip(0, len(image_rows) - 1)
            hit = image_rows[pos, 0] == image_ids
            z_col[hit] = image_rows[pos[hit], 1]
        type_ids = num[:, 4].astype(np.int64)
        names = dict(self._rows("SELECT id, name FROM markertype"))
        uniq, inverse = np.unique(type_ids, return_inverse=True)
        type_names = (
            np.array([names.get(int(t)) for t in uniq] + [None], dtype=object)[:-1][inverse]
            if len(uniq)
            else np.zeros(0, dtype=object)
        )
        track_ids = num[:, 5].astype(np.int64)
        return pd.DataFrame(
            {
                "id": ids_out,
                "image_id": image_ids,
                "z": z_col,
                "x": num[:, 2].copy(),
                "y": num[:, 3].copy(),
                "type_id": pd.arrays.IntegerArray(type_ids, type_ids < 0),
                "type": pd.Series(type_names, dtype=object),
                "track_id": pd.arrays.IntegerArray(track_ids, track_ids < 0),
                "processed": num[:, 6].astype(np.int64),
                "style": pd.Series(style_col, dtype=object),
                "text": pd.Series(text_col, dtype=object),
            }
        )

    def count_markers(self, **filters: Any) -> int:
        """Number of markers matching the filters of :meth:`get_markers`.

        Returns
        -------
        int
        """
        where, params = self._where("m", **filters)
        return int(self._rows(f"SELECT COUNT(*) FROM marker m{where}", params)[0][0])

    def remove_markers(
        self,
        ids: Any = None,
        *,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        track: Any = None,
        layer: str | int | None = None,
    ) -> int:
        """Delete the markers matching all given filters (at least one is required).

        A track loses its row with its last marker (ClickPoints' ``no_empty_tracks`` trigger).

        Parameters
        ----------
        ids, image, z, type, track, layer
            As in :meth:`get_markers`.

        Returns
        -------
        int
            Number of markers deleted.
        """
        if all(v is None for v in (ids, image, z, type, track)):
            raise AnnotationError("remove_markers needs a filter (ids, image, z, type or track)")
        with self.transaction():
            where, params = self._where("m", ids=ids, image=image, z=z, type=type, track=track, layer=layer)
            return (
                self._db()
                .execute(f"DELETE FROM marker WHERE id IN (SELECT m.id FROM marker m{where})", params)
                .rowcount
            )

    # -- tracks

    def add_track(self, type: str | int, *, style: Any = None, text: str | None = None, hidden: bool = False) -> int:
        """Create an empty track of a track-mode marker type.

        Parameters
        ----------
        type : str or int
            A marker type whose mode includes 4 (track).
        style : str or dict, optional
        text : str, optional
        hidden : bool

        Returns
        -------
        int
            The track id. Add its markers with ``set_markers(..., track=id)``.
        """
        with self.transaction():
            type_id = next(iter(self._type_ids(type, 1)))
            if type_id is None:
                raise AnnotationError("a track needs a marker type")
            mode = self._one("SELECT mode FROM markertype WHERE id = ?", (type_id,))[0]
            if not int(mode) & schema.TYPE_TRACK:
                raise AnnotationError(f"{self.path}: marker type {type!r} has mode {mode}, not track mode (4)")
            new_id = self._next_id("track")
            self._db().execute(
                "INSERT INTO track (id, style, text, type_id, hidden) VALUES (?, ?, ?, ?, ?)",
                (new_id, _style(style), _text(text), type_id, int(bool(hidden))),
            )
            return new_id

    def get_tracks(self, type: Any = None) -> pd.DataFrame:
        """Tracks with their marker counts and first/last plane.

        Parameters
        ----------
        type : str, int or array_like, optional

        Returns
        -------
        pandas.DataFrame
            Columns ``id, type_id, type, style, text, hidden, n_markers, first_z, last_z``.
        """
        where, params = self._where("tr", type=type)
        rows = self._rows(
            "SELECT tr.id, tr.type_id, t.name, tr.style, tr.text, tr.hidden, COUNT(m.id), MIN(i.sort_index), "
            "MAX(i.sort_index) FROM track tr LEFT JOIN markertype t ON t.id = tr.type_id "
            "LEFT JOIN marker m ON m.track_id = tr.id LEFT JOIN image i ON i.id = m.image_id"
            f"{where} GROUP BY tr.id ORDER BY tr.id",
            params,
        )
        frame = pd.DataFrame(
            rows, columns=["id", "type_id", "type", "style", "text", "hidden", "n_markers", "first_z", "last_z"]
        )
        frame["hidden"] = frame["hidden"].astype(bool)
        for col in ("first_z", "last_z"):
            frame[col] = pd.array([_int_or_none(v) for v in frame[col]], dtype="Int64")
        return frame

    def _after(self, track: int, z: int) -> str:
        return (
            f"SELECT m.id FROM marker m JOIN image i ON i.id = m.image_id "
            f"WHERE m.track_id = {int(track)} AND i.sort_index > {int(z)}"
        )

    def split_track(self, track: int, z: int) -> int | None:
        """Move the markers of a track after plane ``z`` to a new track (a copy of its fields).

        Parameters
        ----------
        track : int
        z : int
            Markers with ``sort_index > z`` move.

        Returns
        -------
        int or None
            The new track id, or None when no marker lies after ``z`` (nothing changes).
        """
        with self.transaction():
            conn = self._db()
            row = conn.execute("SELECT style, text, type_id, hidden FROM track WHERE id = ?", (int(track),)).fetchone()
            if row is None:
                raise AnnotationError(f"{self.path}: no track with id {track}")
            moving = [r[0] for r in conn.execute(self._after(track, z))]
            if not moving:
                return None
            new_id = self._next_id("track")
            conn.execute("INSERT INTO track (id, style, text, type_id, hidden) VALUES (?, ?, ?, ?, ?)", (new_id, *row))
            conn.execute(
                "UPDATE marker SET track_id = ? WHERE id IN (SELECT value FROM json_each(?))",
                (new_id, _json_list(moving)),
            )
            return new_id

    def merge_tracks(self, track: int, other: int) -> int:
        """Move all markers of ``other`` into ``track`` and delete ``other``.

        Parameters
        ----------
        track, other : int
            The two tracks must not have markers on the same image.

        Returns
        -------
        int
            Number of markers moved.
        """
        with self.transaction():
            conn = self._db()
            for t in (track, other):
                if conn.execute("SELECT 1 FROM track WHERE id = ?", (int(t),)).fetchone() is None:
                    raise AnnotationError(f"{self.path}: no track with id {t}")
            if int(track) == int(other):
                return 0
            shared = conn.execute(
                "SELECT COUNT(*) FROM marker a JOIN marker b ON a.image_id = b.image_id "
                "WHERE a.track_id = ? AND b.track_id = ?",
                (int(track), int(other)),
            ).fetchone()[0]
            if shared:
                raise AnnotationError(
                    f"{self.path}: tracks {track} and {other} both have markers on "
                    f"{shared} image(s); a track holds one marker per image"
                )
            moved = conn.execute("UPDATE marker SET track_id = ? WHERE track_id = ?", (int(track), int(other))).rowcount
            conn.execute("DELETE FROM track WHERE id = ?", (int(other),))
            return moved

    def remove_track_markers_after(self, track: int, z: int) -> int:
        """Delete the markers of a track on planes after ``z``.

        Parameters
        ----------
        track : int
        z : int

        Returns
        -------
        int
            Number of markers deleted (the track goes with its last marker).
        """
        with self.transaction():
            return self._db().execute(f"DELETE FROM marker WHERE id IN ({self._after(track, z)})").rowcount

    def remove_tracks(self, ids: Any) -> int:
        """Delete tracks with their markers.

        Parameters
        ----------
        ids : int or array_like

        Returns
        -------
        int
            Number of tracks deleted.
        """
        with self.transaction():
            return (
                self._db()
                .execute(
                    "DELETE FROM track WHERE id IN (SELECT value FROM json_each(?))",
                    (_json_list(int(v) for v in _as_values(ids)),),
                )
                .rowcount
            )

    # -- lines, rectangles, ellipses

    def _set_shapes(
        self,
        table: str,
        coords: dict[str, Any],
        image: Any,
        z: Any,
        type: Any,
        style: Any,
        text: Any,
        processed: Any,
        layer: Any,
    ) -> np.ndarray:
        arrays = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in coords.items()}
        n = max(len(a) for a in arrays.values())
        for k, a in arrays.items():
            if len(a) == 1 and n > 1:
                arrays[k] = np.repeat(a, n)
            elif len(a) != n:
                raise AnnotationError(f"{k} has {len(a)} values for {n} {table}s")
            if not np.isfinite(arrays[k]).all():
                raise AnnotationError(f"{table} {k} values must be finite numbers")
        if n == 0:
            return np.empty(0, dtype=np.int64)
        with self.transaction():
            images = self._target_images(image, z, layer, n)
            types = self._type_ids(type, n)
            start = self._next_id(table)
            ids = np.arange(start, start + n, dtype=np.int64)
            names = list(arrays)
            rows = zip(
                ids.tolist(),
                images,
                *(arrays[k].tolist() for k in names),
                types,
                _column(processed, n, "processed", int),
                _column(style, n, "style", _style),
                _column(text, n, "text", _text),
                strict=True,
            )
            cols = ", ".join(["id", "image_id", *names, "type_id", "processed", "style", "text"])
            self._db().executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * (len(names) + 6))})', rows)
        return ids

    def _get_shapes(self, table: str, **filters: Any) -> pd.DataFrame:
        names = list(_SHAPE_COLUMNS[table])
        columns = ["id", "image_id", "z", *names, "type_id", "type", "processed", "style", "text"]
        if not self._has(table):
            return pd.DataFrame(columns=columns)
        where, params = self._where("s", **filters)
        rows = self._rows(
            f"SELECT s.id, s.image_id, i.sort_index, {', '.join('s.' + c for c in names)}, s.type_id, t.name, "
            f's.processed, s.style, s.text FROM "{table}" s JOIN image i ON i.id = s.image_id '
            f"LEFT JOIN markertype t ON t.id = s.type_id{where} ORDER BY s.id",
            params,
        )
        frame = pd.DataFrame(rows, columns=columns)
        frame["type_id"] = pd.array([_int_or_none(v) for v in frame["type_id"]], dtype="Int64")
        return frame

    def _remove_shapes(self, table: str, ids: Any, **filters: Any) -> int:
        if ids is None and all(filters.get(k) is None for k in ("image", "z", "type")):
            raise AnnotationError(f"removing {table}s needs a filter (ids, image, z or type)")
        with self.transaction():
            where, params = self._where("s", ids=ids, **filters)
            return (
                self._db()
                .execute(f'DELETE FROM "{table}" WHERE id IN (SELECT s.id FROM "{table}" s{where})', params)
                .rowcount
            )

    def set_lines(
        self,
        x1: Any,
        y1: Any,
        x2: Any,
        y2: Any,
        *,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        style: Any = None,
        text: Any = None,
        processed: Any = 0,
        layer: str | int | None = None,
    ) -> np.ndarray:
        """Add lines (stored ClickPoints coordinates) in one transaction.

        Parameters
        ----------
        x1, y1, x2, y2 : array_like
        image, z, type, style, text, processed, layer
            As in :meth:`set_markers`.

        Returns
        -------
        numpy.ndarray
            The new ids.
        """
        return self._set_shapes(
            "line", {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, image, z, type, style, text, processed, layer
        )

    def get_lines(
        self, *, ids: Any = None, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> pd.DataFrame:
        """Lines matching the filters.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z, x1, y1, x2, y2, type_id, type, processed, style, text``.
        """
        return self._get_shapes("line", ids=ids, image=image, z=z, type=type, layer=layer)

    def remove_lines(
        self, ids: Any = None, *, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> int:
        """Delete the lines matching the filters.

        Returns
        -------
        int
        """
        return self._remove_shapes("line", ids, image=image, z=z, type=type, layer=layer)

    def set_rectangles(
        self,
        x: Any,
        y: Any,
        width: Any,
        height: Any,
        *,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        style: Any = None,
        text: Any = None,
        processed: Any = 0,
        layer: str | int | None = None,
    ) -> np.ndarray:
        """Add rectangles (corner ``x, y`` and size, stored coordinates) in one transaction.

        Returns
        -------
        numpy.ndarray
            The new ids.
        """
        return self._set_shapes(
            "rectangle",
            {"x": x, "y": y, "width": width, "height": height},
            image,
            z,
            type,
            style,
            text,
            processed,
            layer,
        )

    def get_rectangles(
        self, *, ids: Any = None, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> pd.DataFrame:
        """Rectangles matching the filters.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z, x, y, width, height, type_id, type, processed, style, text``.
        """
        return self._get_shapes("rectangle", ids=ids, image=image, z=z, type=type, layer=layer)

    def remove_rectangles(
        self, ids: Any = None, *, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> int:
        """Delete the rectangles matching the filters.

        Returns
        -------
        int
        """
        return self._remove_shapes("rectangle", ids, image=image, z=z, type=type, layer=layer)

    def set_ellipses(
        self,
        x: Any,
        y: Any,
        width: Any,
        height: Any,
        angle: Any = 0.0,
        *,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        style: Any = None,
        text: Any = None,
        processed: Any = 0,
        layer: str | int | None = None,
    ) -> np.ndarray:
        """Add ellipses (centre ``x, y``, axes ``width, height``, ``angle`` in degrees).

        Returns
        -------
        numpy.ndarray
            The new ids.
        """
        return self._set_shapes(
            "ellipse",
            {"x": x, "y": y, "width": width, "height": height, "angle": angle},
            image,
            z,
            type,
            style,
            text,
            processed,
            layer,
        )

    def get_ellipses(
        self, *, ids: Any = None, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> pd.DataFrame:
        """Ellipses matching the filters.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z, x, y, width, height, angle, type_id, type, processed, style, text``.
        """
        return self._get_shapes("ellipse", ids=ids, image=image, z=z, type=type, layer=layer)

    def remove_ellipses(
        self, ids: Any = None, *, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> int:
        """Delete the ellipses matching the filters.

        Returns
        -------
        int
        """
        return self._remove_shapes("ellipse", ids, image=image, z=z, type=type, layer=layer)

    # -- polygons

    def add_polygon(
        self,
        points: Any,
        *,
        image: Any = None,
        z: Any = None,
        type: Any = None,
        closed: bool = True,
        style: Any = None,
        text: Any = None,
        processed: int = 0,
        layer: str | int | None = None,
    ) -> int:
        """Add a polygon with its points (stored coordinates).

        Parameters
        ----------
        points : array_like
            ``(N, 2)`` array of ``x, y``.
        image, z, type, style, text, processed, layer
            As in :meth:`set_markers` (single values).
        closed : bool

        Returns
        -------
        int
            The polygon id.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(pts).all():
            raise AnnotationError("polygon points must be finite numbers")
        with self.transaction():
            conn = self._db()
            image_id = self._one_image(image, z, layer)
            type_id = next(iter(self._type_ids(type, 1)))
            new_id = self._next_id("polygon")
            conn.execute(
                "INSERT INTO polygon (id, image_id, type_id, closed, processed, style, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id, image_id, type_id, int(bool(closed)), int(processed), _style(style), _text(text)),
            )
            conn.executemany(
                'INSERT INTO polygonpoint (polygon_id, x, y, "index") VALUES (?, ?, ?, ?)',
                [(new_id, float(px), float(py), i) for i, (px, py) in enumerate(pts.tolist())],
            )
            return new_id

    def get_polygons(
        self, *, ids: Any = None, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> pd.DataFrame:
        """Polygons matching the filters, with their points.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z, type_id, type, closed, processed, style, text, points``
            (``points``: ``(N, 2)`` array of ``x, y`` in point order).
        """
        columns = ["id", "image_id", "z", "type_id", "type", "closed", "processed", "style", "text", "points"]
        if not self._has("polygon"):
            return pd.DataFrame(columns=columns)
        where, params = self._where("s", ids=ids, image=image, z=z, type=type, layer=layer)
        rows = self._rows(
            "SELECT s.id, s.image_id, i.sort_index, s.type_id, t.name, s.closed, s.processed, s.style, s.text "
            "FROM polygon s JOIN image i ON i.id = s.image_id LEFT JOIN markertype t ON t.id = s.type_id"
            f"{where} ORDER BY s.id",
            params,
        )
        points: dict[int, list] = {r[0]: [] for r in rows}
        if rows:
            for pid, px, py in self._rows(
                "SELECT polygon_id, x, y FROM polygonpoint WHERE polygon_id IN (SELECT value FROM json_each(?)) "
                'ORDER BY polygon_id, "index"',
                (_json_list(points),),
            ):
                points[pid].append((px, py))
        frame = pd.DataFrame(rows, columns=columns[:-1])
        frame["closed"] = frame["closed"].astype(bool)
        frame["type_id"] = pd.array([_int_or_none(v) for v in frame["type_id"]], dtype="Int64")
        frame["points"] = [np.asarray(points[i], dtype=np.float64).reshape(-1, 2) for i in frame["id"]]
        return frame

    def remove_polygons(
        self, ids: Any = None, *, image: Any = None, z: Any = None, type: Any = None, layer: str | int | None = None
    ) -> int:
        """Delete the polygons (and their points) matching the filters.

        Returns
        -------
        int
        """
        if ids is None and image is None and z is None and type is None:
            raise AnnotationError("removing polygons needs a filter (ids, image, z or type)")
        with self.transaction():
            where, params = self._where("s", ids=ids, image=image, z=z, type=type, layer=layer)
            return (
                self._db()
                .execute(f"DELETE FROM polygon WHERE id IN (SELECT s.id FROM polygon s{where})", params)
                .rowcount
            )

    # -- masks

    def set_mask_type(self, name: str, color: str | Sequence[int] | None = None, index: int | None = None) -> int:
        """Create or update a mask type (unique by name and by index).

        Parameters
        ----------
        name : str
        color : str or sequence of int, optional
        index : int, optional
            The pixel value of this type in masks (1..253); a new type gets the lowest free.

        Returns
        -------
        int
            The mask type id.
        """
        with self.transaction():
            conn = self._db()
            row = conn.execute("SELECT id FROM masktype WHERE name = ?", (name,)).fetchone()
            if row:
                updates = {}
                if color is not None:
                    updates["color"] = normalize_color(color)
                if index is not None:
                    updates['"index"'] = int(index)
                if updates:
                    conn.execute(
                        "UPDATE masktype SET " + ", ".join(f"{k} = ?" for k in updates) + " WHERE id = ?",
                        (*updates.values(), row[0]),
                    )
                return int(row[0])
            if index is None:
                used = {r[0] for r in conn.execute('SELECT "index" FROM masktype')}
                index = min(set(range(1, 254)) - used)
            new_id = self._next_id("masktype")
            conn.execute(
                'INSERT INTO masktype (id, name, color, "index") VALUES (?, ?, ?, ?)',
                (new_id, name, normalize_color(color or PALETTE[(new_id - 1) % len(PALETTE)]), int(index)),
            )
            return new_id

    def get_mask_types(self) -> pd.DataFrame:
        """All mask types.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, name, color, index``.
        """
        return pd.DataFrame(
            self._rows('SELECT id, name, color, "index" FROM masktype ORDER BY id'),
            columns=["id", "name", "color", "index"],
        )

    def set_mask(self, data: Any, *, image: Any = None, z: Any = None, layer: str | int | None = None) -> int:
        """Store the mask of one image (replaces its mask; one mask per image).

        Parameters
        ----------
        data : array_like
            2D uint8 (or bool) array of mask type indices, shape ``(height, width)``.
        image : int, optional
        z : int, optional
        layer : str or int, optional

        Returns
        -------
        int
            The mask id.
        """
        blob = encode_mask(data)
        shape = np.shape(data)
        with self.transaction():
            conn = self._db()
            image_id = self._one_image(image, z, layer)
            size = conn.execute("SELECT width, height FROM image WHERE id = ?", (image_id,)).fetchone()
            if size is None:
                raise AnnotationError(f"{self.path}: no image with id {image_id}")
            if size[0] is not None and size[1] is not None and tuple(shape) != (size[1], size[0]):
                raise AnnotationError(
                    f"{self.path}: mask shape {tuple(shape)} does not match image {image_id} "
                    f"(height {size[1]}, width {size[0]})"
                )
            row = conn.execute("SELECT MIN(id) FROM mask WHERE image_id = ?", (image_id,)).fetchone()
            if row[0] is not None:
                conn.execute("UPDATE mask SET data = ? WHERE id = ?", (blob, row[0]))
                return int(row[0])
            return int(conn.execute("INSERT INTO mask (image_id, data) VALUES (?, ?)", (image_id, blob)).lastrowid)

    def get_mask(self, *, image: Any = None, z: Any = None, layer: str | int | None = None) -> np.ndarray | None:
        """The mask of one image as a uint8 array, or None.

        Returns
        -------
        numpy.ndarray or None
        """
        image_id = self._one_image(image, z, layer)
        row = self._one("SELECT data FROM mask WHERE image_id = ? ORDER BY id LIMIT 1", (image_id,))
        return None if row is None else decode_mask(row[0])

    def get_masks(self) -> pd.DataFrame:
        """Which images have masks (without the data).

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z``.
        """
        return pd.DataFrame(
            self._rows(
                "SELECT m.id, m.image_id, i.sort_index FROM mask m JOIN image i ON i.id = m.image_id ORDER BY m.id"
            ),
            columns=["id", "image_id", "z"],
        )

    def remove_mask(self, *, image: Any = None, z: Any = None, layer: str | int | None = None) -> int:
        """Delete the mask of one image.

        Returns
        -------
        int
            Number of mask rows deleted.
        """
        with self.transaction():
            image_id = self._one_image(image, z, layer)
            return self._db().execute("DELETE FROM mask WHERE image_id = ?", (image_id,)).rowcount

    # -- annotations and tags

    def set_tag(self, name: str) -> int:
        """Get or create a tag by name.

        Parameters
        ----------
        name : str

        Returns
        -------
        int
            The tag id.
        """
        with self.transaction():
            conn = self._db()
            row = conn.execute("SELECT MIN(id) FROM tag WHERE name = ?", (name,)).fetchone()
            if row[0] is not None:
                return int(row[0])
            return int(conn.execute("INSERT INTO tag (name) VALUES (?)", (name,)).lastrowid)

    def get_tags(self) -> pd.DataFrame:
        """All tags.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, name``.
        """
        return pd.DataFrame(self._rows("SELECT id, name FROM tag ORDER BY id"), columns=["id", "name"])

    def set_annotation(
        self,
        *,
        image: Any = None,
        z: Any = None,
        comment: str | None = None,
        rating: int | None = None,
        tags: Sequence[str] | None = None,
        timestamp: Any = None,
        layer: str | int | None = None,
    ) -> int:
        """Create or update the annotation of one image.

        Parameters
        ----------
        image, z, layer
            The image.
        comment : str, optional
        rating : int, optional
        tags : sequence of str, optional
            Replaces the annotation's tags (created by name when missing).
        timestamp : datetime or str, optional

        Returns
        -------
        int
            The annotation id. Arguments left None keep the stored values.
        """
        with self.transaction():
            conn = self._db()
            image_id = self._one_image(image, z, layer)
            row = conn.execute("SELECT id FROM annotation WHERE image_id = ?", (image_id,)).fetchone()
            if row is None:
                ann_id = int(
                    conn.execute(
                        "INSERT INTO annotation (image_id, timestamp, comment, rating) VALUES (?, ?, ?, ?)",
                        (image_id, _timestamp_to_db(timestamp), comment or "", int(rating or 0)),
                    ).lastrowid
                )
            else:
                ann_id = int(row[0])
                updates = {
                    "timestamp": _timestamp_to_db(timestamp),
                    "comment": comment,
                    "rating": None if rating is None else int(rating),
                }
                updates = {k: v for k, v in updates.items() if v is not None}
                if updates:
                    conn.execute(
                        "UPDATE annotation SET " + ", ".join(f"{k} = ?" for k in updates) + " WHERE id = ?",
                        (*updates.values(), ann_id),
                    )
            if tags is not None:
                conn.execute("DELETE FROM tagassociation WHERE annotation_id = ?", (ann_id,))
                conn.executemany(
                    "INSERT INTO tagassociation (annotation_id, tag_id) VALUES (?, ?)",
                    [(ann_id, self.set_tag(t)) for t in dict.fromkeys(tags)],
                )
            return ann_id

    def get_annotations(self) -> pd.DataFrame:
        """All annotations with their tags.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z, timestamp, comment, rating, tags`` (tags: list of names).
        """
        rows = self._rows(
            "SELECT a.id, a.image_id, i.sort_index, a.timestamp, a.comment, a.rating FROM annotation a "
            "JOIN image i ON i.id = a.image_id ORDER BY a.id"
        )
        tags: dict[int, list[str]] = {r[0]: [] for r in rows}
        for ann_id, name in self._rows(
            "SELECT ta.annotation_id, t.name FROM tagassociation ta JOIN tag t ON t.id = ta.tag_id ORDER BY ta.id"
        ):
            tags.setdefault(ann_id, []).append(name)
        frame = pd.DataFrame(rows, columns=["id", "image_id", "z", "timestamp", "comment", "rating"])
        frame["timestamp"] = [_timestamp_from_db(v) for v in frame["timestamp"]]
        frame["tags"] = [tags[i] for i in frame["id"]]
        return frame

    def get_annotation(self, *, image: Any = None, z: Any = None, layer: str | int | None = None) -> dict | None:
        """The annotation of one image, or None.

        Returns
        -------
        dict or None
            Keys ``id, image_id, z, timestamp, comment, rating, tags``.
        """
        image_id = self._one_image(image, z, layer)
        frame = self.get_annotations()
        match = frame[frame["image_id"] == image_id]
        return None if match.empty else match.iloc[0].to_dict()

    def remove_annotation(self, *, image: Any = None, z: Any = None, layer: str | int | None = None) -> int:
        """Delete the annotation of one image (its tag links go with it; tags stay).

        Returns
        -------
        int
        """
        with self.transaction():
            image_id = self._one_image(image, z, layer)
            return self._db().execute("DELETE FROM annotation WHERE image_id = ?", (image_id,)).rowcount

    # -- offsets

    def set_offset(
        self, x: float, y: float, *, image: Any = None, z: Any = None, layer: str | int | None = None
    ) -> int:
        """Set the drift offset of one image (ClickPoints adds it to displayed positions).

        Returns
        -------
        int
            The offset id.
        """
        with self.transaction():
            conn = self._db()
            image_id = self._one_image(image, z, layer)
            row = conn.execute("SELECT id FROM offset WHERE image_id = ?", (image_id,)).fetchone()
            if row:
                conn.execute("UPDATE offset SET x = ?, y = ? WHERE id = ?", (float(x), float(y), row[0]))
                return int(row[0])
            return int(
                conn.execute(
                    "INSERT INTO offset (image_id, x, y) VALUES (?, ?, ?)", (image_id, float(x), float(y))
                ).lastrowid
            )

    def get_offsets(self) -> pd.DataFrame:
        """All offsets.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, image_id, z, x, y``.
        """
        return pd.DataFrame(
            self._rows(
                "SELECT o.id, o.image_id, i.sort_index, o.x, o.y FROM offset o JOIN image i "
                "ON i.id = o.image_id ORDER BY o.id"
            ),
            columns=["id", "image_id", "z", "x", "y"],
        )

    def remove_offset(self, *, image: Any = None, z: Any = None, layer: str | int | None = None) -> int:
        """Delete the offset of one image.

        Returns
        -------
        int
        """
        with self.transaction():
            image_id = self._one_image(image, z, layer)
            return self._db().execute("DELETE FROM offset WHERE image_id = ?", (image_id,)).rowcount

    # -- integrity

    def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check`` and ``foreign_key_check``.

        Returns
        -------
        list of str
            Problems; empty when the file is sound.
        """
        problems = [r[0] for r in self._rows("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {r}" for r in self._rows("PRAGMA foreign_key_check")]
        return problems


# ----------------------------------------------------------------------------- tables

#: Columns of the point table exchanged with the rest of spimflow.
FRAME_COLUMNS = ("z", "y", "x", "type", "marker_id", "track_id", "text", "processed", "style")


def markers_to_frame(
    project: Project, type: Any = None, *, layer: str | int | None = None, apply_offset: bool = False
) -> pd.DataFrame:
    """Markers as a point table in spimflow's voxel-centre convention.

    Parameters
    ----------
    project : Project
    type : str, int or array_like, optional
        Only these marker types.
    layer : str or int, optional
        Only markers on images of this layer (default: all).
    apply_offset : bool
        Add each image's drift offset (as ClickPoints displays them).

    Returns
    -------
    pandas.DataFrame
        Columns ``z, y, x, type, marker_id, track_id, text, processed, style``; ``x, y`` are
        the stored values minus :data:`CLICKPOINTS_PIXEL_OFFSET`, ``z`` is the image's
        ``sort_index``, ``type`` the marker type name.
    """
    markers = project.get_markers(type=type, image=None if layer is None else project.get_images(layer)["id"].tolist())
    x, y = markers["x"].to_numpy(), markers["y"].to_numpy()
    if apply_offset and len(markers):
        offsets = project.get_offsets().set_index("image_id")
        ox = markers["image_id"].map(offsets["x"]).fillna(0.0).to_numpy()
        oy = markers["image_id"].map(offsets["y"]).fillna(0.0).to_numpy()
        x, y = x + ox, y + oy
    return pd.DataFrame(
        {
            "z": markers["z"].to_numpy(),
            "y": clickpoints_to_voxel(y),
            "x": clickpoints_to_voxel(x),
            "type": markers["type"].array,
            "marker_id": markers["id"].to_numpy(),
            "track_id": markers["track_id"].array,
            "text": markers["text"].array,
            "processed": markers["processed"].to_numpy(),
            "style": markers["style"].array,
        }
    )


def frame_to_markers(
    project: Project,
    frame: pd.DataFrame,
    type_column: str | None = "type",
    text: str | Sequence[str] | None = None,
    *,
    default_type: str = "cell",
    layer: str | int | None = None,
    color: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Add the points of a table as markers, in one transaction.

    Parameters
    ----------
    project : Project
        Opened for writing, with an image per plane (:meth:`Project.add_volume_planes`).
    frame : pandas.DataFrame
        Columns ``z, y, x`` in voxel-centre coordinates; ``z`` is rounded to the nearest
        plane. Optional columns ``style`` and ``processed`` (and ``text``, see below) are
        used; ``marker_id`` and ``track_id`` are not (ids are the project's own).
    type_column : str or None
        Column with marker type names; missing types are created (point mode). When None
        or absent, every marker gets ``default_type``. A missing value means no type.
    text : str or sequence of str, optional
        One text for every marker (may hold SmartText fields) or one per row; default:
        the ``text`` column if there is one.
    default_type : str
    layer : str or int, optional
    color : str, optional
        Colour of types created here (default: :data:`PALETTE`).
    chunk_size : int
    progress : callable, optional
        As in :meth:`Project.set_markers`.

    Returns
    -------
    numpy.ndarray
        Ids of the new markers, in row order.
    """
    missing = [c for c in ("z", "y", "x") if c not in frame.columns]
    if missing:
        raise AnnotationError(f"the point table lacks column(s) {', '.join(missing)} (needs z, y, x)")
    n = len(frame)
    if type_column is not None and type_column in frame.columns:
        types = [
            None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
            for v in frame[type_column].tolist()
        ]
    else:
        types = [default_type] * n
    if text is None and "text" in frame.columns:
        text = frame["text"].tolist()
    with project.transaction():
        known = set(project.get_marker_types()["name"])
        for name in dict.fromkeys(t for t in types if t is not None):
            if name not in known:
                project.set_marker_type(name, color=color, mode=schema.TYPE_MARKER)
        return project.set_markers(
            voxel_to_clickpoints(frame["x"].to_numpy(dtype=np.float64)),
            voxel_to_clickpoints(frame["y"].to_numpy(dtype=np.float64)),
            z=frame["z"].to_numpy(dtype=np.float64),
            type=types,
            text=text,
            style=frame["style"].tolist() if "style" in frame.columns else None,
            processed=frame["processed"].fillna(0).astype(int).to_numpy() if "processed" in frame.columns else 0,
            layer=layer,
            chunk_size=chunk_size,
            progress=progress,
        )
