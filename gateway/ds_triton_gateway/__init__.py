"""OpenAI-compatible HTTP gateway in front of the Triton replicas (``ds-triton-gateway``).

A separate process: it reaches one or more Triton replicas over gRPC through
``ds_triton_client`` (which balances, health-checks and fails over) and serves
OpenAI's ``/v1/models``, ``/v1/embeddings``, ``/v1/completions`` and
``/v1/chat/completions``, so applications written for the OpenAI API only change
their ``base_url``.

Layout, one job per module:

* ``settings``: the typed settings and their flags / ``DS_TRITON_GATEWAY_*`` variables;
* ``app``: the FastAPI application and its routes;
* ``guard``: API keys, body size and in-flight limits, request metrics (ASGI middleware);
* ``auth``: the API keys, compared in constant time;
* ``schemas``: OpenAI's request bodies; ``inputs``: from them to texts, prompts, sampling keys;
* ``catalog``: the repository's models and tasks; ``text``: their tokenizer (chat template, counts);
* ``embeddings``: Matryoshka ``dimensions`` and ``encoding_format``;
* ``generation``: completions and chat, whole or streamed as SSE;
* ``errors``: OpenAI error objects and the status of every client failure;
* ``metrics``: Prometheus metrics; ``cli``: the ``ds-triton-gateway`` command.
"""
