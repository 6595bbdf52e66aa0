"""Server-side package shared by every model in ``model_repository/``.

Layout, one job per module:

* ``spec``: the typed model spec (``1/model.json``) every model folder carries.
* ``errors``: domain errors, free of Triton; ``triton.errors`` maps them to codes.
* ``loading``: Hugging Face checkpoint + ``deepspeed.init_inference``.
* ``devices``: where an instance runs and how many CPU threads it may use.
* ``embedding``: request validation and the pooled encoder (no Triton imports).
* ``triton``: the only package that touches ``triton_python_backend_utils``.
* ``runtime``: locating and launching the ``tritonserver`` binary.
"""

__version__ = "0.1.0"
