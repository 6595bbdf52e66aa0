"""The thin adapter between Triton's Python backend and the domain code.

This is the only package that imports ``triton_python_backend_utils``; it is
importable only inside the backend stub (or with a stub module in unit tests).
"""
