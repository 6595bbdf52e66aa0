#!/bin/sh
# Readiness of this replica (Kubernetes readinessProbe, compose healthcheck):
# every model the entry point serves answers READY, not just the server.
set -eu
models_file="${DS_TRITON_RUN_DIR:-/var/run/ds-triton}/models"
models="$(cat "$models_file" 2>/dev/null || true)"
if [ -z "$models" ]; then
  echo "no model is being served (see the container log)" >&2
  exit 1
fi
for model in $models; do
  if ! curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${HTTP_PORT:-8000}/v2/models/${model}/ready"; then
    echo "model ${model} is not ready" >&2
    exit 1
  fi
done
