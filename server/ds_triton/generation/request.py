"""One generation request, assembled from the vLLM-backend tensor interface and validated.

The adapter hands over plain Python values (decoded tensors and the request
parameters JSON); everything about their meaning lives here, so it is tested
without Triton.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ds_triton.errors import InvalidInputError
from ds_triton.generation.params import (
    SAMPLING_KEYS,
    SamplingParams,
    convert_value,
    decode_json_object,
    reject_unknown_keys,
    sampling_params_from_dict,
    to_bool,
)
from ds_triton.spec import GenerationSpec
from ds_triton_interface import (
    CUMULATIVE_LOGPROB,
    FINISH_REASON,
    GENERATION,
    LOGPROBS,
    NUM_INPUT_TOKENS,
    NUM_OUTPUT_TOKENS,
    SAMPLING_PARAMETERS,
    STREAM,
    TEXT_INPUT,
    request_flag,
)
from ds_triton_interface import EXCLUDE_INPUT_IN_OUTPUT as EXCLUDE_INPUT

RETURN_NUM_INPUT_TOKENS = request_flag(NUM_INPUT_TOKENS)
RETURN_NUM_OUTPUT_TOKENS = request_flag(NUM_OUTPUT_TOKENS)
RETURN_FINISH_REASON = request_flag(FINISH_REASON)
RETURN_CUMULATIVE_LOGPROB = request_flag(CUMULATIVE_LOGPROB)
RETURN_LOGPROBS = request_flag(LOGPROBS)
#: The optional BOOL inputs (also accepted as request parameters).
FLAG_INPUTS: tuple[str, ...] = GENERATION.flag_inputs
REQUEST_PARAMETERS = "parameters"


@dataclass(frozen=True)
class RawGenerationInputs:
    """What arrived with one request, before interpretation.

    Attributes:
        text_input: The elements of the ``text_input`` tensor (bytes), or None if absent.
        flags: Values of the optional BOOL inputs that were sent, by input name.
        sampling_parameters: The ``sampling_parameters`` element (JSON bytes), if sent.
        parameters: The request parameters JSON (``request.parameters()``); Triton puts
            the ``"parameters"`` object of an HTTP generate body here.
    """

    text_input: Sequence[Any] | None
    flags: Mapping[str, bool] = field(default_factory=dict)
    sampling_parameters: bytes | str | None = None
    parameters: str = ""


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request: prompt text, sampling parameters and output options."""

    prompt: str
    sampling: SamplingParams
    stream: bool = False
    exclude_input_in_output: bool = False
    return_num_input_tokens: bool = False
    return_num_output_tokens: bool = False
    return_finish_reason: bool = False
    return_cumulative_logprob: bool = False
    return_logprobs: bool = False

    def validate(self) -> None:
        """Raise ``InvalidInputError`` naming the field that is wrong.

        Sampling parameters are validated once, where they are parsed
        (``sampling_params_from_dict``); this checks the rest of the request.
        """
        if not self.prompt.strip():
            raise InvalidInputError(f"input '{TEXT_INPUT}' must be a non-empty prompt")
        if self.stream and not self.exclude_input_in_output:
            # The vLLM backend's rule: a stream carries only new text.
            raise InvalidInputError(
                f"input '{EXCLUDE_INPUT}' = false is not allowed when streaming "
                f"('{STREAM}' = true)"
            )

    @classmethod
    def from_raw(cls, raw: RawGenerationInputs, options: GenerationSpec) -> GenerationRequest:
        """Interpret inputs the way Triton's vLLM backend does, then validate.

        Tensors win over request parameters; ``exclude_input_in_output`` defaults to
        true when streaming and false otherwise (non-streaming output starts with
        the prompt, as vLLM's does).
        """
        prompt = _prompt(raw.text_input)
        parameters = decode_json_object(raw.parameters, REQUEST_PARAMETERS)
        # Triton passes only what the client sent (HTTP generate: the body's
        # "parameters" object and any top-level key that is not an input), so an
        # unknown key is a client's typo, refused like one in sampling_parameters.
        reject_unknown_keys(parameters, (*FLAG_INPUTS, *SAMPLING_KEYS), REQUEST_PARAMETERS)
        flags = {name: raw.flags[name] for name in FLAG_INPUTS if name in raw.flags}
        for name in FLAG_INPUTS:
            if name not in flags and name in parameters:
                flags[name] = to_bool(f"{REQUEST_PARAMETERS}.{name}", parameters[name])
        sampling_dict = {k: v for k, v in parameters.items() if k not in FLAG_INPUTS}
        if raw.sampling_parameters is not None:
            tensor = decode_json_object(raw.sampling_parameters, SAMPLING_PARAMETERS)
            _refuse_conflicts(sampling_dict, tensor)
            sampling_dict = tensor
        sampling = sampling_params_from_dict(
            sampling_dict, options.default_max_tokens, options.max_tokens_limit
        )
        stream = flags.get(STREAM, False)
        request = cls(
            prompt=prompt,
            sampling=sampling,
            stream=stream,
            exclude_input_in_output=flags.get(EXCLUDE_INPUT, stream),
            return_num_input_tokens=flags.get(RETURN_NUM_INPUT_TOKENS, False),
            return_num_output_tokens=flags.get(RETURN_NUM_OUTPUT_TOKENS, False),
            return_finish_reason=flags.get(RETURN_FINISH_REASON, False),
            return_cumulative_logprob=flags.get(RETURN_CUMULATIVE_LOGPROB, False),
            return_logprobs=flags.get(RETURN_LOGPROBS, False),
        )
        request.validate()
        return request


def _refuse_conflicts(parameters: Mapping[str, Any], tensor: Mapping[str, Any]) -> None:
    """Sampling keys sent both ways must agree: the tensor wins, so any other value would be lost.

    vLLM-backend clients (its sample client) send the same JSON both ways; that passes.
    """
    for key, value in parameters.items():
        theirs = tensor.get(key)
        if value == theirs or _same_value(key, value, theirs):
            continue
        raise InvalidInputError(
            f"{REQUEST_PARAMETERS}.{key} ({value!r}) conflicts with {SAMPLING_PARAMETERS}."
            f"{key} ({theirs!r}); the {SAMPLING_PARAMETERS} input wins, so send the key once"
        )


def _same_value(key: str, mine: Any, theirs: Any) -> bool:
    """Equal once coerced (``"0.1"`` and ``0.1``); a value that does not parse differs."""
    try:
        return bool(convert_value(key, mine) == convert_value(key, theirs))
    except InvalidInputError:
        return False


def _prompt(elements: Sequence[Any] | None) -> str:
    if elements is None:
        raise InvalidInputError(f"missing input '{TEXT_INPUT}'")
    if len(elements) != 1:
        raise InvalidInputError(
            f"input '{TEXT_INPUT}' must hold exactly one prompt, got {len(elements)} elements"
        )
    value = elements[0]
    if isinstance(value, str):
        return value
    if not isinstance(value, bytes):
        raise InvalidInputError(
            f"input '{TEXT_INPUT}' must be BYTES (UTF-8 text), got {type(value).__name__}"
        )
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"input '{TEXT_INPUT}' is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        ) from exc
