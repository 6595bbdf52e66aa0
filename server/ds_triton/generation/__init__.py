"""Text generation: request parsing, sampling, in-flight batched decoding with a KV cache.

Free of Triton: ``ds_triton.backend.generation`` adapts it to the Python backend.
"""
