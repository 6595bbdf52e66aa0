#!/usr/bin/env bash
# The GPU check: one unattended run, under 10 minutes, on one H100/H200 machine that has
# Python 3.12 with a CUDA torch and no package registry (README "GPUs").
#
#   bash scripts/gpu_check.sh --bundle DIR [--bundle DIR ...] [--run-dir DIR]
#   bash scripts/gpu_check.sh --dry-run        # here, on CPU: every step but the CUDA-only ones
#
# Steps (one PASS / FAIL / CUDA-ONLY line each; exit 1 if any step failed; a GPU
# test that would skip is a failure):
#   1. machine: nvidia-smi, torch sees CUDA                               [CUDA-only]
#   2. bundle: join the transfers (scripts/gpu_bundle.sh), check sha256
#   3. venv over the machine's torch (--system-site-packages), wheels installed offline
#   4. DeepSpeed's transformer_inference op, built once into RUN/torch_extensions [CUDA-only]
#   5. the tiny test checkpoints (scripts/make_tiny_models.py)
#   6. the gpu-marked tests (tests/gpu)                                    [dry run: collected only]
#   7. the table (scripts/gpu/bench.py) -> RUN/gpu_table.md
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.gpu_run"
DRY_RUN=0
BUNDLES=()
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --bundle) BUNDLES+=("$2"); shift ;;
    --run-dir) RUN="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$RUN"
RUN="$(cd "$RUN" && pwd)"
export TORCH_EXTENSIONS_DIR="$RUN/torch_extensions"  # the op is built once per run folder
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
FAILED=()
STARTED=$SECONDS

step() { printf '\n== %s (%ds)\n' "$1" "$((SECONDS - STARTED))"; }
pass() { printf 'PASS  %s\n' "$1"; }
fail() { printf 'FAIL  %s\n' "$1"; FAILED+=("$1"); }
cuda_only() { printf 'CUDA-ONLY  %s: not run in the dry run\n' "$1"; }

step "1. machine"
if ((DRY_RUN)); then
  cuda_only "nvidia-smi and torch.cuda"
else
  if nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; then
    pass "nvidia-smi"
  else
    fail "nvidia-smi (no NVIDIA driver or GPU)"
  fi
  if python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0)); assert torch.cuda.is_available()'; then
    pass "python3 with a CUDA torch"
  else
    fail "python3's torch does not see a GPU"
  fi
  if ((${#FAILED[@]})); then  # nothing after this can pass: say so now, not ten minutes later
    printf '\nGPU CHECK FAILED: no usable GPU here (use --dry-run on a machine without one)\n'
    exit 1
  fi
fi

step "2. bundle"
WHEELS="$RUN/wheels"
if ((${#BUNDLES[@]})); then
  if python3 "$ROOT/scripts/gpu/bundle.py" unpack "$WHEELS" "${BUNDLES[@]}"; then
    pass "bundle joined and checked ($(ls "$WHEELS" | wc -l) wheels)"
  else
    fail "bundle"
  fi
elif ((DRY_RUN)); then
  # Prove the join on a bundle made here of three small files, one split in parts.
  demo="$RUN/bundle-demo"; rm -rf "$demo"; mkdir -p "$demo/in"
  head -c 3000000 /dev/urandom >"$demo/in/big.whl"; echo a >"$demo/in/a.whl"; echo b >"$demo/in/b.whl"
  if python3 "$ROOT/scripts/gpu/bundle.py" pack "$demo/in" "$demo/out" --part-mib 1 --transfer-mib 2 >/dev/null \
     && python3 "$ROOT/scripts/gpu/bundle.py" unpack "$demo/joined" "$demo/out" >/dev/null \
     && cmp -s "$demo/in/big.whl" "$demo/joined/big.whl"; then
    pass "bundle split and join (a 3 MB file in 1 MiB parts over 2 transfers)"
  else
    fail "bundle split and join"
  fi
else
  fail "no --bundle given: carry the transfer folders of scripts/gpu_bundle.sh"
fi

step "3. venv"
if ((DRY_RUN)); then
  PY="$ROOT/.venv/bin/python"
  [[ -x $PY ]] && pass "dry run: this checkout's .venv ($("$PY" -V))" || fail "no .venv: run make setup"
else
  VENV="$RUN/venv"
  if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv --system-site-packages "$VENV"
  fi
  PY="$VENV/bin/python"
  if "$PY" -m pip install -q --no-index --no-deps --no-compile "$WHEELS"/*.whl; then
    pass "wheels installed over the machine's torch"
  else
    fail "pip install of the bundle"
  fi
  if "$PY" -c 'import torch, deepspeed, transformers, tritonclient.grpc, ds_triton, ds_triton_client; assert torch.cuda.is_available()'; then
    pass "imports (torch $("$PY" -c 'import torch; print(torch.__version__)'), deepspeed, transformers, ds_triton)"
  else
    fail "imports in the venv"
  fi
  stub="$("$PY" -c 'import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent / "tritonserver/python_backend_stubs/3.12/triton_python_backend_stub")')"
  if [[ -x $stub ]] && ! ldd "$stub" | grep -q "not found"; then
    pass "Python 3.12 backend stub links here"
  else
    fail "the 3.12 backend stub does not link here: $(ldd "$stub" 2>&1 | grep 'not found' | tr '\n' ' ')"
  fi
fi
export PATH="$(dirname "$PY"):$PATH"

step "4. DeepSpeed inference op"
if ((DRY_RUN)); then
  cuda_only "transformer_inference op build"
else
  if MAX_JOBS="${MAX_JOBS:-16}" timeout 400 "$PY" -c 'from deepspeed.ops.op_builder import InferenceBuilder; InferenceBuilder().load()'; then
    pass "transformer_inference op built (cached in $TORCH_EXTENSIONS_DIR)"
  else
    fail "DeepSpeed's transformer_inference op does not build (ninja, nvcc matching torch's CUDA)"
  fi
fi

step "5. checkpoints"
if "$PY" "$ROOT/scripts/make_tiny_models.py" --quiet; then pass "tiny Llama checkpoint"; else fail "make_tiny_models.py"; fi

step "6. gpu tests"
if ((DRY_RUN)); then
  count="$(cd "$ROOT" && "$PY" -m pytest -q --collect-only -m gpu tests/gpu 2>/dev/null | grep -c '::')"
  if ((count > 0)); then pass "$count gpu tests collected"; else fail "no gpu tests collected"; fi
  cuda_only "running the gpu tests"
else
  if (cd "$ROOT" && DS_TRITON_REQUIRE_GPU=1 timeout 300 "$PY" -m pytest -q -rs -p no:cacheprovider \
        -m gpu tests/gpu --junitxml "$RUN/gpu-tests.xml"); then
    if grep -q 'skipped="0"' "$RUN/gpu-tests.xml"; then pass "gpu tests"; else fail "gpu tests skipped some"; fi
  else
    fail "gpu tests"
  fi
fi

step "7. table"
bench=("$PY" "$ROOT/scripts/gpu/bench.py" --out "$RUN/gpu_table.md")
((DRY_RUN)) && bench+=(--dry-run)
# On CPU the same table takes minutes more (a shared CI machine may be slower still).
if (cd "$ROOT" && timeout "$( ((DRY_RUN)) && echo 1500 || echo 300)" "${bench[@]}"); then pass "table in $RUN/gpu_table.md"; else fail "table"; fi

printf '\n== done in %ds\n' "$((SECONDS - STARTED))"
if ((${#FAILED[@]})); then
  printf 'GPU CHECK FAILED: %d step(s):\n' "${#FAILED[@]}"
  printf '  - %s\n' "${FAILED[@]}"
  exit 1
fi
echo "GPU CHECK PASSED$( ((DRY_RUN)) && echo ' (dry run: CUDA-only steps not run)')"
