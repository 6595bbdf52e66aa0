"""The PyTriton peer: the same encoder behind PyTriton's ``@batch`` decorator.

Dynamic batching is configured like this project's model (max batch, preferred
sizes, queue delay read from its ``model.json``), so the comparison is
between two ways of serving the same batched forward.
Run as ``python -m ds_triton_perf.peers.pytriton_server --http-port ... --model-dir DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ds_triton.spec import ModelSpec
from ds_triton_perf.peers.model import load_encoder

MODEL_NAME = "text_embedding_pytriton"


def serve(model_dir: Path, http_port: int, grpc_port: int, metrics_port: int) -> None:
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    spec = ModelSpec.load(model_dir / "1")
    encoder = load_encoder(model_dir)

    @batch
    def infer(text: np.ndarray) -> dict[str, Any]:
        texts = [item.decode("utf-8") for item in text.reshape(-1)]
        result = encoder.encode(texts)
        return {"embedding": result.embeddings, "truncated": result.truncated.reshape(-1, 1)}

    config = TritonConfig(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                          http_address="127.0.0.1", grpc_address="127.0.0.1")
    batching = spec.batching
    with Triton(config=config) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=infer,
            inputs=[Tensor(name="text", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="embedding", dtype=np.float32, shape=(encoder.dimension,)),
                     Tensor(name="truncated", dtype=np.bool_, shape=(1,))],
            config=ModelConfig(
                max_batch_size=batching.max_batch_size,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=batching.max_queue_delay_us,
                    preferred_batch_size=list(batching.preferred_batch_sizes),
                ),
            ),
            strict=False,
        )
        triton.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args()
    serve(args.model_dir, args.http_port, args.grpc_port, args.metrics_port)


if __name__ == "__main__":
    main()
