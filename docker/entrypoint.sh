#!/usr/bin/env bash
# Container entry point: resolve GPU instance groups for this machine, then run
# the image's own tritonserver with live loading (poll mode) on the repository.
set -euo pipefail
REPO="${MODEL_REPOSITORY:-/opt/ds-triton/model_repository}"
# Models whose model.json says "device": "gpu", "gpus": "all" get one instance
# group per GPU this container sees; CPU models are left as they are.
ds-triton render "$REPO"
exec tritonserver \
  --model-repository="$REPO" \
  --model-control-mode=poll --repository-poll-secs="${POLL_SECONDS:-5}" \
  --exit-on-error=false --strict-readiness=false \
  --http-port="${HTTP_PORT:-8000}" --grpc-port="${GRPC_PORT:-8001}" --metrics-port="${METRICS_PORT:-8002}" \
  "$@"
