"""ClickPoints' project schema (SQLite ``.cdb``, schema version 22), written out as SQL.

The statements reproduce the layout that ClickPoints 1.10's ``DataFile`` creates through
peewee: same table and column names, column types, ``NOT NULL``-ness, foreign keys and the
index names peewee derives (``<table>_<column>[_<column>...]``), so that ClickPoints'
own ``CREATE ... IF NOT EXISTS`` on opening finds everything already there. SQL ``DEFAULT``
clauses are added where ClickPoints has a Python-side default (harmless to ClickPoints,
useful to plain SQL writers).

Two places where the upstream source and the usual summary of the schema disagree are
kept as upstream has them (see ``docs/annotation.md``): ``mask.image_id`` and
``tag.name`` carry a plain, not a unique, index; spimflow keeps one mask per image and one
tag per name itself.
"""

from __future__ import annotations

import sqlite3

#: The schema version ClickPoints 1.10 writes in ``meta`` (key ``'version'``).
SCHEMA_VERSION = 22

#: Marker type modes (``markertype.mode``).
TYPE_MARKER = 0
TYPE_RECT = 1
TYPE_LINE = 2
TYPE_TRACK = 4
TYPE_ELLIPSE = 8
TYPE_POLYGON = 16

#: Every table of a version-22 project and its columns, in creation order.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "meta": ("id", "key", "value"),
    "option": ("id", "key", "value"),
    "path": ("id", "path"),
    "layer": ("id", "name", "base_layer_id"),
    "image": (
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
        "layer_id",
    ),
    "offset": ("id", "image_id", "x", "y"),
    "markertype": ("id", "name", "color", "mode", "style", "text", "hidden"),
    "track": ("id", "style", "text", "type_id", "hidden"),
    "marker": ("id", "image_id", "x", "y", "type_id", "processed", "track_id", "style", "text"),
    "line": ("id", "image_id", "x1", "y1", "x2", "y2", "type_id", "processed", "style", "text"),
    "rectangle": ("id", "image_id", "x", "y", "width", "height", "type_id", "processed", "style", "text"),
    "ellipse": ("id", "image_id", "x", "y", "width", "height", "angle", "type_id", "processed", "style", "text"),
    "polygon": ("id", "image_id", "type_id", "closed", "processed", "style", "text"),
    "polygonpoint": ("id", "polygon_id", "x", "y", "index"),
    "mask": ("id", "image_id", "data"),
    "masktype": ("id", "name", "color", "index"),
    "annotation": ("id", "image_id", "timestamp", "comment", "rating"),
    "tag": ("id", "name"),
    "tagassociation": ("id", "annotation_id", "tag_id"),
}

#: Unique indexes of the schema: (table, columns).
UNIQUE_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("meta", ("key",)),
    ("option", ("key",)),
    ("path", ("path",)),
    ("layer", ("name",)),
    ("image", ("filename", "path_id", "frame")),
    ("offset", ("image_id",)),
    ("markertype", ("name",)),
    ("marker", ("image_id", "track_id")),
    ("polygonpoint", ("polygon_id", "index")),
    ("masktype", ("name",)),
    ("masktype", ("index",)),
    ("annotation", ("image_id",)),
)

_CASCADE = "ON DELETE CASCADE"


def _fk(column: str, table: str, cascade: bool = True) -> str:
    return f'FOREIGN KEY ("{column}") REFERENCES "{table}" ("id")' + (f" {_CASCADE}" if cascade else "")


_TABLES: tuple[tuple[str, str], ...] = (
    ("meta", '"id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL'),
    ("option", '"id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255)'),
    ("path", '"id" INTEGER NOT NULL PRIMARY KEY, "path" VARCHAR(255) NOT NULL'),
    (
        "layer",
        '"id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, "base_layer_id" INTEGER NOT NULL, '
        + _fk("base_layer_id", "layer", cascade=False),
    ),
    (
        "image",
        '"id" INTEGER NOT NULL PRIMARY KEY, "filename" VARCHAR(255) NOT NULL, "ext" VARCHAR(10) NOT NULL, '
        '"frame" INTEGER NOT NULL DEFAULT 0, "external_id" INTEGER, "timestamp" DATETIME, '
        '"sort_index" INTEGER NOT NULL DEFAULT 0, "width" INTEGER, "height" INTEGER, '
        '"path_id" INTEGER NOT NULL, "layer_id" INTEGER NOT NULL, '
        + _fk("path_id", "path")
        + ", "
        + _fk("layer_id", "layer"),
    ),
    (
        "offset",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x" REAL NOT NULL, "y" REAL NOT NULL, '
        + _fk("image_id", "image"),
    ),
    (
        "markertype",
        '"id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, "color" VARCHAR(255) NOT NULL, '
        '"mode" INTEGER NOT NULL DEFAULT 0, "style" VARCHAR(255), "text" VARCHAR(255), '
        '"hidden" INTEGER NOT NULL DEFAULT 0',
    ),
    (
        "track",
        '"id" INTEGER NOT NULL PRIMARY KEY, "style" VARCHAR(255), "text" VARCHAR(255), '
        '"type_id" INTEGER NOT NULL, "hidden" INTEGER NOT NULL DEFAULT 0, ' + _fk("type_id", "markertype"),
    ),
    (
        "marker",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x" REAL NOT NULL, "y" REAL NOT NULL, '
        '"type_id" INTEGER, "processed" INTEGER NOT NULL DEFAULT 0, "track_id" INTEGER, '
        '"style" VARCHAR(255), "text" VARCHAR(255), '
        + _fk("image_id", "image")
        + ", "
        + _fk("type_id", "markertype")
        + ", "
        + _fk("track_id", "track"),
    ),
    (
        "line",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x1" REAL NOT NULL, "y1" REAL NOT NULL, '
        '"x2" REAL NOT NULL, "y2" REAL NOT NULL, "type_id" INTEGER, "processed" INTEGER NOT NULL DEFAULT 0, '
        '"style" VARCHAR(255), "text" VARCHAR(255), ' + _fk("image_id", "image") + ", " + _fk("type_id", "markertype"),
    ),
    (
        "rectangle",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x" REAL NOT NULL, '
        '"y" REAL NOT NULL, "width" REAL NOT NULL, "height" REAL NOT NULL, "type_id" INTEGER, '
        '"processed" INTEGER NOT NULL DEFAULT 0, "style" VARCHAR(255), "text" VARCHAR(255), '
        + _fk("image_id", "image")
        + ", "
        + _fk("type_id", "markertype"),
    ),
    (
        "ellipse",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x" REAL NOT NULL, '
        '"y" REAL NOT NULL, "width" REAL NOT NULL, "height" REAL NOT NULL, "angle" REAL NOT NULL, '
        '"type_id" INTEGER, "processed" INTEGER NOT NULL DEFAULT 0, "style" VARCHAR(255), "text" VARCHAR(255), '
        + _fk("image_id", "image")
        + ", "
        + _fk("type_id", "markertype"),
    ),
    (
        "polygon",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "type_id" INTEGER, '
        '"closed" INTEGER NOT NULL DEFAULT 0, "processed" INTEGER NOT NULL DEFAULT 0, '
        '"style" VARCHAR(255), "text" VARCHAR(255), ' + _fk("image_id", "image") + ", " + _fk("type_id", "markertype"),
    ),
    (
        "polygonpoint",
        '"id" INTEGER NOT NULL PRIMARY KEY, "polygon_id" INTEGER NOT NULL, "x" REAL NOT NULL, '
        '"y" REAL NOT NULL, "index" INTEGER NOT NULL, ' + _fk("polygon_id", "polygon"),
    ),
    (
        "mask",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "data" BLOB NOT NULL, '
        + _fk("image_id", "image"),
    ),
    (
        "masktype",
        '"id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, "color" VARCHAR(255) NOT NULL, '
        '"index" INTEGER NOT NULL',
    ),
    (
        "annotation",
        '"id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "timestamp" DATETIME, '
        '"comment" TEXT NOT NULL DEFAULT \'\', "rating" INTEGER NOT NULL DEFAULT 0, ' + _fk("image_id", "image"),
    ),
    ("tag", '"id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL'),
    (
        "tagassociation",
        '"id" INTEGER NOT NULL PRIMARY KEY, "annotation_id" INTEGER NOT NULL, '
        '"tag_id" INTEGER NOT NULL, ' + _fk("annotation_id", "annotation") + ", " + _fk("tag_id", "tag"),
    ),
)

# plain indexes peewee creates for every foreign key column
_FK_INDEXES: tuple[tuple[str, str], ...] = (
    ("layer", "base_layer_id"),
    ("image", "path_id"),
    ("image", "layer_id"),
    ("track", "type_id"),
    ("marker", "image_id"),
    ("marker", "type_id"),
    ("marker", "track_id"),
    ("line", "image_id"),
    ("line", "type_id"),
    ("rectangle", "image_id"),
    ("rectangle", "type_id"),
    ("ellipse", "image_id"),
    ("ellipse", "type_id"),
    ("polygon", "image_id"),
    ("polygon", "type_id"),
    ("polygonpoint", "polygon_id"),
    ("mask", "image_id"),
    ("tagassociation", "annotation_id"),
    ("tagassociation", "tag_id"),
)

#: ClickPoints deletes a track together with its last marker.
TRIGGER_NO_EMPTY_TRACKS = (
    "CREATE TRIGGER IF NOT EXISTS no_empty_tracks AFTER DELETE ON marker BEGIN "
    "DELETE FROM track WHERE id = OLD.track_id AND "
    "(SELECT COUNT(marker.id) FROM marker WHERE marker.track_id = track.id) = 0; END"
)


def _index_sql(table: str, columns: tuple[str, ...], unique: bool) -> str:
    name = "_".join((table, *columns))
    cols = ", ".join(f'"{c}"' for c in columns)
    return f'CREATE {"UNIQUE " if unique else ""}INDEX IF NOT EXISTS "{name}" ON "{table}" ({cols})'


def ddl_statements() -> list[str]:
    """All statements creating a version-22 project (tables, indexes, trigger), idempotent.

    Returns
    -------
    list of str
        ``CREATE ... IF NOT EXISTS`` statements in dependency order.
    """
    out = [f'CREATE TABLE IF NOT EXISTS "{name}" ({body})' for name, body in _TABLES]
    out += [_index_sql(t, cols, True) for t, cols in UNIQUE_INDEXES]
    out += [_index_sql(t, (c,), False) for t, c in _FK_INDEXES if (t, (c,)) not in UNIQUE_INDEXES]
    out.append(TRIGGER_NO_EMPTY_TRACKS)
    return out


def create_schema(conn: sqlite3.Connection) -> None:
    """Create every missing table, index and the trigger, and the ``meta`` version row.

    Runs in one transaction. Existing tables and rows are left as they are; the version row
    is only inserted when ``meta`` has none.

    Parameters
    ----------
    conn : sqlite3.Connection
        A writable connection (any isolation level).
    """
    in_tx = conn.in_transaction
    if not in_tx:
        conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in ddl_statements():
            conn.execute(stmt)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('version', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        if not in_tx:
            conn.execute("ROLLBACK")
        raise
    if not in_tx:
        conn.execute("COMMIT")


def table_columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Columns of every table in the database.

    Parameters
    ----------
    conn : sqlite3.Connection

    Returns
    -------
    dict
        Table name -> column names in table order (``sqlite_*`` tables left out).
    """
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {n: [r[1] for r in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}


def read_version(conn: sqlite3.Connection) -> int | None:
    """The schema version in ``meta``, or None when there is no ``meta`` table or no version row.

    Parameters
    ----------
    conn : sqlite3.Connection

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        If the version value is not an integer.
    """
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    if row is None:
        return None
    return int(str(row[0]).strip())


def verify_schema(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
    """Compare the database with the version-22 layout.

    Parameters
    ----------
    conn : sqlite3.Connection

    Returns
    -------
    missing_tables : list of str
        Tables of the layout that the database lacks (ClickPoints creates these on opening).
    missing_columns : list of str
        ``table.column`` entries lacking from tables that exist (a file spimflow cannot write).
        Extra tables and columns are allowed.
    """
    have = table_columns(conn)
    missing_tables = [t for t in TABLE_COLUMNS if t not in have]
    missing_columns = [f"{t}.{c}" for t, cols in TABLE_COLUMNS.items() if t in have for c in cols if c not in have[t]]
    return missing_tables, missing_columns
