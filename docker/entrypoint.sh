#!/usr/bin/env bash
# Container entry point (tini is PID 1 and forwards SIGTERM to `ds-triton serve`).
#
# 1. The models to serve: $DS_TRITON_MODELS (space-separated), or every folder
#    of $MODEL_REPOSITORY with a 1/model.json.
# 2. Each spec is checked by rendering its config.pbtxt for the GPUs this
#    container sees. A spec that fails is logged and skipped; the rest are served.
# 3. The served models are linked into a repository of their own, so Triton
#    never tries the skipped ones and --strict-readiness=true holds only for
#    the models in use; ready.sh checks each of them.
# 4. exec `ds-triton serve`, as `make serve` does: the model supervisor and the
#    drain on SIGTERM run here too.
set -uo pipefail

repository="${MODEL_REPOSITORY:-/opt/ds-triton/model_repository}"
run_dir="${DS_TRITON_RUN_DIR:-/var/run/ds-triton}"
serving_repository="$run_dir/repository"

log() { printf 'entrypoint: %s\n' "$*" >&2; }

if [[ -n ${DS_TRITON_MODELS:-} ]]; then
  read -r -a wanted <<<"$DS_TRITON_MODELS"
else
  wanted=()
  for spec in "$repository"/*/1/model.json; do
    [[ -f $spec ]] && wanted+=("$(basename "$(dirname "$(dirname "$spec")")")")
  done
fi

mkdir -p "$serving_repository"
find "$serving_repository" -mindepth 1 -maxdepth 1 -type l -delete
served=()
for model in "${wanted[@]}"; do
  if [[ ! -f $repository/$model/1/model.json ]]; then
    log "skipping $model: $repository/$model/1/model.json does not exist"
  elif output=$(ds-triton render "$repository" --model "$model" 2>&1); then
    ln -s "$(realpath "$repository/$model")" "$serving_repository/$model"
    served+=("$model")
  else
    log "skipping $model: its spec does not render:"
    printf '%s\n' "$output" | sed 's/^/entrypoint:   /' >&2
  fi
done
printf '%s\n' "${served[@]}" >"$run_dir/models"
if ((${#served[@]} == 0)); then
  log "no model of ${wanted[*]:-$repository} can be served; the server starts empty and stays not ready"
else
  log "serving ${served[*]}"
fi

# Host, ports, drain timeout and security options come from the environment
# (HOST, HTTP_PORT, ..., DRAIN_TIMEOUT; see `ds-triton serve --help`) or "$@".
exec ds-triton serve \
  --model-repository "$serving_repository" \
  --run-dir "$run_dir" \
  --strict-readiness \
  "$@"
