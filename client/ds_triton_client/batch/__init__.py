"""Batch jobs from files: read rows, run them with bounded concurrency, resume after interruption."""

from ds_triton_client.batch.journal import Journal, JournalMismatchError
from ds_triton_client.batch.reader import InputRow, read_rows
from ds_triton_client.batch.runner import BatchSummary, run_batch

__all__ = ["BatchSummary", "InputRow", "Journal", "JournalMismatchError", "read_rows", "run_batch"]
