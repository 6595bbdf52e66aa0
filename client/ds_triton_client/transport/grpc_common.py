"""Helpers both gRPC transports share: tensors to tritonclient inputs, final-flag reading."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tritonclient.grpc as grpcclient

from ds_triton_client.codec import Tensor
from ds_triton_client.transport.base import Outputs

#: Asks Triton to flag the last response of a decoupled request (possibly an empty one),
#: so a stream that serves one request knows when it is complete.
FINAL_FLAG_PARAMETERS = {"triton_enable_empty_final_response": True}


def grpc_inputs(tensors: Sequence[Tensor]) -> list[grpcclient.InferInput]:
    inputs = []
    for tensor in tensors:
        item = grpcclient.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.data)
        inputs.append(item)
    return inputs


def grpc_outputs(names: Sequence[str]) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(name) for name in names]


def result_arrays(result: Any, names: Sequence[str] | None = None) -> Outputs:
    """Output arrays of a gRPC ``InferResult`` (all outputs when ``names`` is None)."""
    response = result.get_response()
    wanted = names if names is not None else [output.name for output in response.outputs]
    arrays: Outputs = {}
    for name in wanted:
        array = result.as_numpy(name)
        if array is not None:
            arrays[name] = array
    return arrays


def is_final(result: Any) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and bool(parameters["triton_final_response"].bool_param)


def as_dict(message: Any) -> dict[str, Any]:
    """A protobuf answer as the same JSON shape the HTTP API returns."""
    from google.protobuf.json_format import MessageToDict

    return dict(MessageToDict(message, preserving_proto_field_name=True))
