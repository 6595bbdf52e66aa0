"""Running the tritonserver binary (for ``serve``, tests and benchmarks)."""
