"""The data engine: streamed sources of numbered records, a per-record job, sinks and checkpoints.

``run_batch`` (``fmflow batch``) runs a flow once per record of a JSONL, CSV
or Parquet file into a JSONL output, exactly once across crashes and
resumes, on the local engine (one event loop) or on a Dask cluster.

    sources.py     records from JSONL / CSV / Parquet, streamed
    driver.py      the window, the reorder buffer, writing, checkpoint commits
    local.py       the local engine;   dask_engine.py  the Dask engine
    sinks.py       output files;       checkpoint.py   SQLite checkpoints
    batch.py       the batch job and run_batch;  progress.py  progress and summary
"""

from __future__ import annotations

from .batch import BatchResult, arun_batch, run_batch
from .records import DataError, Outcome, Record

__all__ = ["BatchResult", "DataError", "Outcome", "Record", "arun_batch", "run_batch"]
