"""Readers and writers. Arrays are always (z, y, x) once they leave this package."""
