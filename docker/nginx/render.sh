#!/bin/sh
# Render nginx.conf.template to stdout. Only the ${NGINX_*} names below are
# replaced; nginx's own $variables pass through untouched.
# Used by the balancer image at start and by the tests (tests/deploy/).
set -eu
export NGINX_HTTPS_PORT="${NGINX_HTTPS_PORT:-8000}"
export NGINX_GRPCS_PORT="${NGINX_GRPCS_PORT:-8001}"
export NGINX_TLS_CERT="${NGINX_TLS_CERT:-/etc/ds-triton/tls/tls.crt}"
export NGINX_TLS_KEY="${NGINX_TLS_KEY:-/etc/ds-triton/tls/tls.key}"
export NGINX_CLIENT_MAX_BODY_SIZE="${NGINX_CLIENT_MAX_BODY_SIZE:-16m}"
export NGINX_ACCESS_LOG="${NGINX_ACCESS_LOG:-/dev/stdout}"
exec envsubst '${NGINX_HTTPS_PORT} ${NGINX_GRPCS_PORT} ${NGINX_TLS_CERT} ${NGINX_TLS_KEY} ${NGINX_CLIENT_MAX_BODY_SIZE} ${NGINX_ACCESS_LOG}' \
  <"$(dirname "$0")/nginx.conf.template"
