"""Batch jobs from files: read rows, run them with bounded concurrency, resume after interruption."""

from ds_triton_client.jobs.journal import Journal, JournalMismatchError
from ds_triton_client.jobs.reader import InputRow, read_rows
from ds_triton_client.jobs.runner import BatchSummary, run_batch

__all__ = ["BatchSummary", "InputRow", "Journal", "JournalMismatchError", "read_rows", "run_batch"]
