"""The tensor interface each task exposes to Triton (names, types, shapes).

The renderer writes it into ``config.pbtxt`` and the checker holds a config
against it, so there is one definition of what a task's model looks like from
the outside. Dims are per request (Triton prepends the batch dimension when
``max_batch_size`` > 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from ds_triton.spec import Task


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a model."""

    name: str
    data_type: str  # a ModelConfig DataType name, e.g. "TYPE_STRING"
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class TaskInterface:
    """Everything about a task's config that does not depend on the deployment."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # Decoupled models answer a request with any number of responses (token
    # streaming) and batch in flight themselves, so Triton must not batch them.
    decoupled: bool
    batched: bool


def embedding_interface(dimension: int) -> TaskInterface:
    """One text in, its pooled embedding and a truncation flag out; Triton batches."""
    return TaskInterface(
        inputs=(TensorSpec("text", "TYPE_STRING", (1,)),),
        outputs=(
            TensorSpec("embedding", "TYPE_FP32", (dimension,)),
            TensorSpec("truncated", "TYPE_BOOL", (1,)),
        ),
        decoupled=False,
        batched=True,
    )


def generation_interface() -> TaskInterface:
    """Triton's vLLM-backend interface, so clients written for that backend work unchanged."""
    return TaskInterface(
        inputs=(
            TensorSpec("text_input", "TYPE_STRING", (1,)),
            TensorSpec("stream", "TYPE_BOOL", (1,), optional=True),
            TensorSpec("sampling_parameters", "TYPE_STRING", (1,), optional=True),
            TensorSpec("exclude_input_in_output", "TYPE_BOOL", (1,), optional=True),
            TensorSpec("return_finish_reason", "TYPE_BOOL", (1,), optional=True),
            TensorSpec("return_num_input_tokens", "TYPE_BOOL", (1,), optional=True),
            TensorSpec("return_num_output_tokens", "TYPE_BOOL", (1,), optional=True),
        ),
        outputs=(
            TensorSpec("text_output", "TYPE_STRING", (-1,)),
            TensorSpec("finish_reason", "TYPE_STRING", (-1,)),
            TensorSpec("num_input_tokens", "TYPE_UINT32", (1,)),
            TensorSpec("num_output_tokens", "TYPE_UINT32", (-1,)),
        ),
        decoupled=True,
        batched=False,
    )


def task_interface(task: Task, embedding_dimension: int | None = None) -> TaskInterface:
    """The interface of ``task``; embeddings need the checkpoint's hidden size."""
    if task == "embedding":
        if embedding_dimension is None or embedding_dimension < 1:
            raise ValueError("the embedding interface needs the checkpoint's hidden size")
        return embedding_interface(embedding_dimension)
    return generation_interface()
