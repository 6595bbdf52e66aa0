"""One declaration of what each served task looks like from the outside.

Tensor names, data types, dims and optional flags (``tensors``) and the generation
model's sampling keys with their types and ranges (``sampling``). The server, its
config checker and the client all read them from here. Standard library only, so
the client installs without torch or DeepSpeed and the Triton stub imports it cheaply.
"""

from ds_triton_interface.sampling import MAX_LOGPROBS, SAMPLING_KEYS, Range, SamplingKey
from ds_triton_interface.tensors import (
    CAPACITY_MESSAGES,
    CUMULATIVE_LOGPROB,
    EMBED_EMBEDDING,
    EMBED_TEXT,
    EMBED_TRUNCATED,
    EXCLUDE_INPUT_IN_OUTPUT,
    FINISH_REASON,
    GENERATION,
    LOGPROBS,
    NUM_INPUT_TOKENS,
    NUM_OUTPUT_TOKENS,
    OVER_CAPACITY,
    PROMPT_LOGPROBS,
    SAMPLING_PARAMETERS,
    SHUTTING_DOWN,
    STREAM,
    TEXT_INPUT,
    TEXT_OUTPUT,
    UNLOADED,
    TaskInterface,
    TensorSpec,
    embedding_interface,
    generation_interface,
    request_flag,
    task_interface,
)

__all__ = [
    "CAPACITY_MESSAGES",
    "CUMULATIVE_LOGPROB",
    "EMBED_EMBEDDING",
    "EMBED_TEXT",
    "EMBED_TRUNCATED",
    "EXCLUDE_INPUT_IN_OUTPUT",
    "FINISH_REASON",
    "GENERATION",
    "LOGPROBS",
    "MAX_LOGPROBS",
    "NUM_INPUT_TOKENS",
    "NUM_OUTPUT_TOKENS",
    "OVER_CAPACITY",
    "PROMPT_LOGPROBS",
    "SAMPLING_KEYS",
    "SAMPLING_PARAMETERS",
    "SHUTTING_DOWN",
    "STREAM",
    "TEXT_INPUT",
    "TEXT_OUTPUT",
    "UNLOADED",
    "Range",
    "SamplingKey",
    "TaskInterface",
    "TensorSpec",
    "embedding_interface",
    "generation_interface",
    "request_flag",
    "task_interface",
]
