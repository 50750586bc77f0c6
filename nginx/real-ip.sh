#!/bin/sh
# Writes Nginx's real_ip configuration from TRUSTED_PROXIES: the addresses or CIDR
# ranges (comma- or space-separated) of the proxies in front of Nginx (the TLS
# terminator, a load balancer) whose X-Forwarded-For is believed. Nginx then takes
# the client's address as the last one in X-Forwarded-For that is not a trusted
# proxy (real_ip_recursive), so limit_req, the access log and Django's throttles
# (through the X-Forwarded-For Nginx sends on) see the client, not the terminator.
# Empty: nobody is trusted, the client is whoever connects.
#
# Docker Compose mounts this as /docker-entrypoint.d/40-wallet-real-ip.sh (the
# nginx image runs it before Nginx starts); tests/stack.py runs it the same way,
# with WALLET_REAL_IP_CONF pointing into its work directory.
set -eu

out="${WALLET_REAL_IP_CONF:-/etc/nginx/wallet/real_ip.conf}"
tmp="$out.tmp"
trap 'rm -f "$tmp"' EXIT

{
    echo "# Generated from TRUSTED_PROXIES by nginx/real-ip.sh at start: do not edit."
    for proxy in $(printf '%s' "${TRUSTED_PROXIES:-}" | tr ',' ' '); do
        case "$proxy" in
            *[!0-9A-Fa-f:./]* | "")
                echo "real-ip.sh: TRUSTED_PROXIES: not an address or range: $proxy" >&2
                exit 1
                ;;
        esac
        echo "set_real_ip_from $proxy;"
    done
    echo "real_ip_header X-Forwarded-For;"
    echo "real_ip_recursive on;"
} >"$tmp"
mv "$tmp" "$out"
