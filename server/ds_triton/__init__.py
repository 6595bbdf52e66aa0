"""Server-side package shared by every model in ``model_repository/``.

Layout, one job per module or package:

* ``spec``: the typed model spec (``1/model.json``) every model folder carries.
* ``errors``: domain errors, free of Triton; ``backend.errors`` maps them to codes.
* ``loading``: Hugging Face checkpoint + ``deepspeed.init_inference`` (and the kernel-injection policy).
* ``devices``: where an instance runs and how many CPU threads it may use.
* ``embedding``: request validation, length grouping and the pooled encoder (no Triton imports).
* ``generation``: sampling, stopping, detokenising and the in-flight batching engine (no Triton imports).
* ``backend``: the Triton Python-backend adapter, the only package that touches
  ``triton_python_backend_utils``.
* ``repository``: model folders: spec schema, config rendering, checks, scaffolding.
* ``server_process``: locating, launching and stopping the ``tritonserver`` process.
* ``commands``: the ``ds-triton`` subcommands (serve, add-model, check, render).
"""

__version__ = "0.1.0"
