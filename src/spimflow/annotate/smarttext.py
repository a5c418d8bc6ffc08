"""ClickPoints' SmartText: ``$field`` placeholders in marker, track and type texts.

ClickPoints shows the text of a marker (or track, line, ...) with placeholders replaced by
values of that object. :func:`render_text` does the same outside the GUI so that exported
labels read like the ones ClickPoints displays. Supported fields:

========================  ==============================================================
``$marker_id``            id of the object itself (marker, line, rectangle, ellipse, ...)
``$track_id``             id of the track (``track`` argument, else the object's
                          ``track_id``)
``$type_id``              id of the marker type (``type`` argument, else ``type_id``)
``$type_name``            name of the marker type (spimflow addition)
``$image_id``             id of the image (plane) the object is on (spimflow addition)
``$x``, ``$y``            position with 2 decimals (``x1``/``y1`` for a line), in stored
                          ClickPoints coordinates
``$x_pos``, ``$y_pos``    the same (the spelling of ClickPoints' documentation)
``$length``               length of a line (or ``length``/``perimeter`` given)
``$width``, ``$height``   size of a rectangle or ellipse
``$area``                 area of a rectangle (``width*height``), of an ellipse
                          (``pi/4*width*height``) or ``area`` given
``\\n``                   the two characters backslash-n become a line break
========================  ==============================================================

In general ``$<object>_id`` is "the id of that object". A field whose value is not known
becomes ``??`` as in ClickPoints; text that is not a known field is left unchanged. Objects
may be mappings (dict, pandas Series, sqlite rows) or objects with attributes.

The text shown for a marker is chosen like ClickPoints does (:func:`resolve_text`): the
marker's own text, else its track's text, else its type's text.
"""

from __future__ import annotations

import math
import re
from typing import Any

_FIELDS = (
    "marker_id",
    "track_id",
    "type_id",
    "type_name",
    "image_id",
    "x_pos",
    "y_pos",
    "length",
    "width",
    "height",
    "area",
    "x",
    "y",
)
# longest names first so that "$x_pos" is one field, not "$x" followed by "_pos"
_PATTERN = re.compile(r"\$(" + "|".join(sorted(_FIELDS, key=len, reverse=True)) + r")")
_UNKNOWN = "??"


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    try:
        value = obj[key]
    except (KeyError, IndexError, TypeError, ValueError):
        value = getattr(obj, key, None)
    if value is None:
        return None
    try:
        if value != value:  # NaN / pandas NA
            return None
    except (TypeError, ValueError):
        return None
    return value


def _num(value: Any) -> str:
    return _UNKNOWN if value is None else f"{float(value):.2f}"


def _int(value: Any) -> str:
    return _UNKNOWN if value is None else str(int(value))


def _area(obj: Any) -> float | None:
    area = _get(obj, "area")
    if area is not None:
        return float(area)
    w, h = _get(obj, "width"), _get(obj, "height")
    if w is None or h is None:
        return None
    if _get(obj, "angle") is not None:  # an ellipse
        return math.pi / 4.0 * float(w) * float(h)
    return float(w) * float(h)


def _length(obj: Any) -> float | None:
    for key in ("length", "perimeter"):
        value = _get(obj, key)
        if value is not None:
            return float(value)
    x1, y1, x2, y2 = (_get(obj, k) for k in ("x1", "y1", "x2", "y2"))
    if None in (x1, y1, x2, y2):
        return None
    return math.hypot(float(x2) - float(x1), float(y2) - float(y1))


def render_text(template: str | None, marker: Any = None, track: Any = None, type: Any = None) -> str:
    """Replace SmartText fields in ``template`` with values of the given objects.

    Parameters
    ----------
    template : str or None
        Text with ``$field`` placeholders (see the module documentation). None gives "".
    marker : mapping or object, optional
        The object the text belongs to: a marker, line, rectangle, ellipse or polygon row
        (keys such as ``id``, ``x``, ``y``, ``x1``..``y2``, ``width``, ``height``, ``angle``,
        ``track_id``, ``type_id``, ``image_id``).
    track : mapping or object, optional
        Its track (key ``id``).
    type : mapping or object, optional
        Its marker type (keys ``id``, ``name``).

    Returns
    -------
    str
        The rendered text; unknown values become ``??``.
    """
    if template is None:
        return ""

    def field(match: re.Match) -> str:
        name = match.group(1)
        if name == "marker_id":
            return _int(_get(marker, "id"))
        if name == "track_id":
            value = _get(track, "id")
            return _int(value if value is not None else _get(marker, "track_id"))
        if name == "type_id":
            value = _get(type, "id")
            return _int(value if value is not None else _get(marker, "type_id"))
        if name == "type_name":
            value = _get(type, "name")
            return _UNKNOWN if value is None else str(value)
        if name == "image_id":
            return _int(_get(marker, "image_id"))
        if name in ("x", "x_pos", "y", "y_pos"):
            axis = name[0]
            value = _get(marker, axis)
            return _num(value if value is not None else _get(marker, axis + "1"))
        if name == "length":
            return _num(_length(marker))
        if name in ("width", "height"):
            return _num(_get(marker, name))
        return _num(_area(marker))  # area

    return _PATTERN.sub(field, str(template)).replace("\\n", "\n")


def resolve_text(marker_text: str | None, track_text: str | None = None, type_text: str | None = None) -> str | None:
    """The text ClickPoints shows for a marker: its own, else its track's, else its type's.

    Parameters
    ----------
    marker_text, track_text, type_text : str or None
        The ``text`` columns of the marker, its track and its marker type.

    Returns
    -------
    str or None
        The first that is not None (NaN counts as None).
    """
    for text in (marker_text, track_text, type_text):
        if text is not None and text == text:
            return text
    return None
