"""Exceptions that stop a whole ingestion run.

A bad *file* never raises: it is accounted in files.parquet. Only a problem with the run's arguments
(missing input, no DICOM at all, an output folder we must not wipe) raises, with a one-line message the
CLI can print as-is. Messages name paths given by the caller, never a DICOM header value.
"""

from __future__ import annotations


class IngestInputError(Exception):
    """The arguments of `ingest_directory` cannot be used (missing input, no DICOM found, ...)."""


class IngestOutputError(IngestInputError):
    """The output folder cannot be (re)created safely; a subclass so callers catching input errors see it."""
