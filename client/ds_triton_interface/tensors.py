"""The tensors each task's model exposes to Triton: names, data types, dims, optional flags.

The server renders these into ``config.pbtxt`` and reads requests by these names,
``ds-triton check`` holds a config against them, and the client builds requests
from them. Dims are per request: Triton prepends the batch dimension when the
model batches (``max_batch_size`` > 0).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- embedding -------------------------------------------------------------------------

EMBED_TEXT = "text"
EMBED_EMBEDDING = "embedding"
EMBED_TRUNCATED = "truncated"

# --- generation: Triton's vLLM-backend names, so clients written for it work unchanged -----

TEXT_INPUT = "text_input"
STREAM = "stream"
SAMPLING_PARAMETERS = "sampling_parameters"
EXCLUDE_INPUT_IN_OUTPUT = "exclude_input_in_output"
TEXT_OUTPUT = "text_output"
FINISH_REASON = "finish_reason"
NUM_INPUT_TOKENS = "num_input_tokens"
NUM_OUTPUT_TOKENS = "num_output_tokens"
CUMULATIVE_LOGPROB = "cumulative_logprob"
LOGPROBS = "logprobs"
PROMPT_LOGPROBS = "prompt_logprobs"

# --- errors a client must tell apart by their words ---------------------------------------
# Capacity errors carry code UNAVAILABLE, but Triton's HTTP generate endpoints answer
# every model error with 400, so the message is what a client can go by.

#: The generation model is at ``max_concurrent_sequences`` + ``max_queued_requests``.
OVER_CAPACITY = "too many concurrent requests"
#: The generation model is stopping (a drain or an unload) and takes no new requests.
SHUTTING_DOWN = "the model is shutting down"
#: The model was unloaded while the request waited or ran.
UNLOADED = "the model was unloaded before the request finished"
#: Every message that means "busy here; safe to send elsewhere or later".
CAPACITY_MESSAGES: tuple[str, ...] = (OVER_CAPACITY, SHUTTING_DOWN, UNLOADED)

#: Config data type -> the datatype name on the wire (KServe v2 HTTP/gRPC).
WIRE_DATATYPES: dict[str, str] = {
    "TYPE_BOOL": "BOOL",
    "TYPE_UINT8": "UINT8",
    "TYPE_UINT16": "UINT16",
    "TYPE_UINT32": "UINT32",
    "TYPE_UINT64": "UINT64",
    "TYPE_INT8": "INT8",
    "TYPE_INT16": "INT16",
    "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64",
    "TYPE_FP16": "FP16",
    "TYPE_FP32": "FP32",
    "TYPE_FP64": "FP64",
    "TYPE_STRING": "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a model.

    Attributes:
        name: The tensor's name in the config and on the wire.
        data_type: A ModelConfig DataType name, e.g. ``"TYPE_STRING"``.
        dims: Per-request dims (-1 = variable).
        optional: Inputs only: the request may leave it out.
        requested_by: Outputs only: the optional BOOL input that asks for this output
            (e.g. ``return_finish_reason``); the model sends it only when that is true.
    """

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False
    requested_by: str | None = None

    @property
    def datatype(self) -> str:
        """The datatype name on the wire (``BYTES``, ``FP32``, ``BOOL``...)."""
        return WIRE_DATATYPES[self.data_type]


@dataclass(frozen=True)
class TaskInterface:
    """Everything about a task's config that does not depend on the deployment.

    Attributes:
        inputs: Every input, the request flags of optional outputs included.
        outputs: Every output.
        decoupled: The model answers a request with any number of responses (token
            streaming) and batches in flight itself, so Triton must not batch it.
        batched: Triton's dynamic batcher merges requests (``max_batch_size`` > 0).
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    decoupled: bool
    batched: bool

    def input(self, name: str) -> TensorSpec:
        """The input called ``name``.

        Raises:
            KeyError: The task has no such input.
        """
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"no input {name!r}")

    @property
    def flag_inputs(self) -> tuple[str, ...]:
        """Names of the optional BOOL inputs (request flags such as ``stream``), in order."""
        return tuple(t.name for t in self.inputs if t.optional and t.data_type == "TYPE_BOOL")


def _with_request_flags(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> tuple[TensorSpec, ...]:
    """``inputs`` followed by one optional BOOL input per output that a flag asks for."""
    flags = tuple(
        TensorSpec(o.requested_by, "TYPE_BOOL", (1,), optional=True) for o in outputs if o.requested_by
    )
    return inputs + flags


def embedding_interface(dimension: int) -> TaskInterface:
    """One text in, its pooled embedding and a truncation flag out; Triton batches.

    Args:
        dimension: The checkpoint's hidden size (the embedding's length).

    Raises:
        ValueError: ``dimension`` is not positive.
    """
    if dimension < 1:
        raise ValueError(f"embedding dimension must be >= 1, got {dimension}")
    return TaskInterface(
        inputs=(TensorSpec(EMBED_TEXT, "TYPE_STRING", (1,)),),
        outputs=(
            TensorSpec(EMBED_EMBEDDING, "TYPE_FP32", (dimension,)),
            TensorSpec(EMBED_TRUNCATED, "TYPE_BOOL", (1,)),
        ),
        decoupled=False,
        batched=True,
    )


#: Outputs of the generation task. An output with ``requested_by`` gets its optional
#: BOOL input added to the inputs, so a new optional output is one entry here.
GENERATION_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(TEXT_OUTPUT, "TYPE_STRING", (-1,)),
    TensorSpec(FINISH_REASON, "TYPE_STRING", (-1,), requested_by="return_finish_reason"),
    # The running sum of the generated tokens' log-probabilities (vLLM's cumulative_logprob).
    TensorSpec(CUMULATIVE_LOGPROB, "TYPE_FP32", (-1,), requested_by="return_cumulative_logprob"),
    # JSON per response: its tokens' log-probabilities ("null" without the ``logprobs`` key).
    TensorSpec(LOGPROBS, "TYPE_STRING", (-1,), requested_by="return_logprobs"),
    TensorSpec(NUM_INPUT_TOKENS, "TYPE_UINT32", (1,), requested_by="return_num_input_tokens"),
    TensorSpec(NUM_OUTPUT_TOKENS, "TYPE_UINT32", (-1,), requested_by="return_num_output_tokens"),
    # JSON, first response only, when the ``prompt_logprobs`` sampling key is set (no flag).
    TensorSpec(PROMPT_LOGPROBS, "TYPE_STRING", (-1,)),
)

GENERATION = TaskInterface(
    inputs=_with_request_flags(
        (
            TensorSpec(TEXT_INPUT, "TYPE_STRING", (1,)),
            TensorSpec(STREAM, "TYPE_BOOL", (1,), optional=True),
            TensorSpec(SAMPLING_PARAMETERS, "TYPE_STRING", (1,), optional=True),
            TensorSpec(EXCLUDE_INPUT_IN_OUTPUT, "TYPE_BOOL", (1,), optional=True),
        ),
        GENERATION_OUTPUTS,
    ),
    outputs=GENERATION_OUTPUTS,
    decoupled=True,
    batched=False,
)


def generation_interface() -> TaskInterface:
    """Triton's vLLM-backend interface (one prompt in, text and token counts out, streamed)."""
    return GENERATION


def request_flag(output: str) -> str:
    """The BOOL input that asks the generation model for ``output``.

    Raises:
        KeyError: ``output`` is not an optional generation output.
    """
    for tensor in GENERATION_OUTPUTS:
        if tensor.name == output and tensor.requested_by:
            return tensor.requested_by
    raise KeyError(f"{output!r} is not an optional generation output")


def task_interface(task: str, embedding_dimension: int | None = None) -> TaskInterface:
    """The interface of ``task`` (``embedding`` or ``generation``).

    Raises:
        ValueError: Unknown task, or an embedding task without the checkpoint's hidden size.
    """
    if task == "embedding":
        if embedding_dimension is None or embedding_dimension < 1:
            raise ValueError("the embedding interface needs the checkpoint's hidden size")
        return embedding_interface(embedding_dimension)
    if task == "generation":
        return GENERATION
    raise ValueError(f"unknown task {task!r}; expected 'embedding' or 'generation'")
