"""Mask images as ClickPoints stores them: PNG bytes in a BLOB, pixel value = mask type index.

spimflow writes 8-bit greyscale PNG. ClickPoints itself writes masks whose largest value
is 1 in a small format of its own (the bytes start with ``BOOL``), so :func:`decode_mask`
reads that too: ``b"BOOL"``, height and width (big-endian uint32), the value of level 0
(uint8), then for each further level ``b"VALS"``, its value (uint8), a byte count
(big-endian uint64) and that many bytes of zlib-compressed, bit-packed flags. The flags of
level ``k`` cover, in C order, the pixels that reached level ``k - 1`` and say which of
them reach level ``k``.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from spimflow.annotate.errors import AnnotationError

BOOL_SIGNATURE = b"BOOL"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_mask(data) -> bytes:
    """Encode a 2D mask as greyscale PNG bytes.

    Parameters
    ----------
    data : array_like
        2D array of mask type indices (bool or integers 0..255).

    Returns
    -------
    bytes
        An 8-bit greyscale PNG.

    Raises
    ------
    AnnotationError
        If the array is not 2D or holds values outside 0..255.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise AnnotationError(f"a mask must be a 2D array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (
            not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool or arr.min() < 0 or arr.max() > 255
        ):
            raise AnnotationError(f"a mask holds mask type indices 0..255; got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _decode_bool(blob: bytes) -> np.ndarray:
    height, width = struct.unpack(">LL", blob[4:12])
    lut = [blob[12]]
    pos = 13
    levels = np.zeros(height * width, dtype=np.uint8)
    level = 0
    while blob[pos : pos + 4] == b"VALS":
        lut.append(blob[pos + 4])
        (size,) = struct.unpack(">Q", blob[pos + 5 : pos + 13])
        bits = np.unpackbits(np.frombuffer(zlib.decompress(blob[pos + 13 : pos + 13 + size]), np.uint8))
        reached = levels >= level
        levels[reached] += bits[: int(reached.sum())]
        level += 1
        pos += 13 + size
    return np.asarray(lut, dtype=np.uint8)[levels].reshape(height, width)


def decode_mask(blob: bytes) -> np.ndarray:
    """Decode a ``mask.data`` BLOB (PNG, or ClickPoints' ``BOOL`` format) to a uint8 array.

    Parameters
    ----------
    blob : bytes

    Returns
    -------
    numpy.ndarray
        2D uint8 array of mask type indices.

    Raises
    ------
    AnnotationError
        If the bytes are neither format.
    """
    blob = bytes(blob)
    try:
        if blob.startswith(BOOL_SIGNATURE):
            return _decode_bool(blob)
        if blob.startswith(_PNG_SIGNATURE):
            with Image.open(io.BytesIO(blob)) as img:
                arr = np.asarray(img)
            if arr.ndim == 3:  # a colour PNG written by another tool: take the first channel
                arr = arr[..., 0]
            return arr.astype(np.uint8, copy=False)
    except (OSError, ValueError, zlib.error, struct.error, IndexError) as exc:
        raise AnnotationError(f"mask data cannot be decoded: {exc}") from exc
    raise AnnotationError(f"mask data is neither PNG nor ClickPoints BOOL (starts with {blob[:8]!r})")
