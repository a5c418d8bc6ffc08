"""Errors of the annotation store; each message names the file it is about."""

from __future__ import annotations

from spimflow.errors import InputFileError, SpimflowError


class AnnotationError(SpimflowError):
    """An annotation project or point file cannot be used as asked."""


class NotAProjectError(AnnotationError, InputFileError):
    """The file is missing, is not SQLite, or is SQLite but not a ClickPoints project."""


class ReadOnlyProjectError(AnnotationError):
    """A write was attempted on a project opened read-only (``mode="r"`` or another schema version)."""
