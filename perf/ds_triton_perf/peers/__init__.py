"""Systems measured beside this project, all over the *same* model code path.

Each peer loads the model with ``ds_triton.loading.load_model`` and embeds with
``ds_triton.embedding.encoder.TextEncoder``, exactly as the Triton model does,
so a difference in the report is a difference in serving, not in the model.
"""
