"""DICOM ingestion: a cohort folder -> int16 HU NIfTI volumes, a manifest and per-file accounting.

Entry point: `cssl_core.ingest.pipeline.ingest_directory`. One module per job: `discover` (walk, path
rules), `header` (header pass: classify each file, hash identifiers), `fields`/`frames` (header values,
per-frame geometry incl. enhanced functional groups), `pixels` (decode, HU), `geometry` (sort, spacing),
`series` (one volume per series), `masks`/`annotations` (labels), `writer` (NIfTI), `tables` and
`summary` (outputs), `parallel` (process pool), `quiet` (no third-party chatter), `reasons`/`messages`
(stable codes and their texts), `keys` (keyed pseudonyms). Pure Python: no Prefect, DVC or MLflow here.
This file imports nothing so that importing a submodule stays cheap in worker processes.
"""
