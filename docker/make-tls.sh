#!/bin/sh
# A private CA and a server certificate for the balancer, for tests and trials:
#   docker/make-tls.sh DIR [DNS-NAME...]
# writes DIR/ca.crt (give it to clients), DIR/tls.crt and DIR/tls.key (nginx).
# The certificate names localhost, 127.0.0.1 and every DNS-NAME given.
# In production use certificates from your own CA instead.
set -eu
dir="${1:?usage: make-tls.sh DIR [DNS-NAME...]}"
shift
mkdir -p "$dir"
names="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do names="$names,DNS:$name"; done
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=ds-triton test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=${1:-localhost}" \
  -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$names" >"$dir/tls.ext"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 365 -extfile "$dir/tls.ext" -out "$dir/tls.crt" 2>/dev/null
rm -f "$dir/tls.csr" "$dir/tls.ext" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/tls.key"
echo "wrote $dir/ca.crt, $dir/tls.crt, $dir/tls.key"
