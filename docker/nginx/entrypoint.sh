#!/bin/sh
# Render the config from the environment (render.sh), then run nginx in the
# foreground with every path under its own prefix.
set -eu
prefix="${NGINX_PREFIX:-/var/lib/ds-triton-nginx}"
mkdir -p "$prefix/tmp"
"$(dirname "$0")/render.sh" >"$prefix/nginx.conf"
exec nginx -e stderr -p "$prefix" -c "$prefix/nginx.conf" -g 'daemon off;'
