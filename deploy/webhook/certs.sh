#!/usr/bin/env bash
# Provisions the webhook's serving certificate without cert-manager: a private CA (kept only in a
# temporary directory unless CA_DIR is set), a certificate for the Service's DNS names, the
# pullmap-webhook-tls Secret, and the CA injected as caBundle into both webhook configurations.
# Re-run to rotate: the webhook reloads the new certificate from the Secret volume without a restart.
# Needs openssl and kubectl (current context). Usage: bash deploy/webhook/certs.sh [--days N]
set -euo pipefail

namespace=pullmap-system
service=pullmap-webhook
secret=pullmap-webhook-tls
webhooks=(mutatingwebhookconfiguration/pullmap validatingwebhookconfiguration/pullmap-maps)
days=365
while (($#)); do
  case "$1" in
    --days) days="$2"; shift 2 ;;
    *) echo "certs.sh: unknown argument $1 (only --days N)" >&2; exit 2 ;;
  esac
done

dir="${CA_DIR:-$(mktemp -d)}"
[[ -n "${CA_DIR:-}" ]] || trap 'rm -rf "$dir"' EXIT
cd "$dir"

if [[ ! -f ca.key ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=pullmap-webhook-ca" -keyout ca.key -out ca.crt 2>/dev/null
fi
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$service.$namespace.svc" \
  -keyout tls.key -out tls.csr 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
  "$service" "$service" "$namespace" "$service" "$namespace" "$service" "$namespace" > san.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile san.ext \
  -out tls.crt 2>/dev/null

kubectl -n "$namespace" create secret tls "$secret" --cert=tls.crt --key=tls.key --dry-run=client -o yaml |
  kubectl apply -f -
ca_bundle="$(base64 -w0 < ca.crt)"
for webhook in "${webhooks[@]}"; do
  kubectl patch "$webhook" --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}]"
done
echo "certs.sh: serving certificate valid for $days days; caBundle injected into ${webhooks[*]}"
