#!/usr/bin/env bash
# Install the system packages the tests need (redis-server, Chromium, npm, pebble) when
# they are missing. Debian/Ubuntu with apt; as root or through sudo.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v npm >/dev/null 2>&1 || need+=(npm)  # webapp's socket.io-client (make node)
# the ACME tests: Pebble (Let's Encrypt's test CA) and pebble-challtestsrv (its mock DNS)
command -v pebble >/dev/null 2>&1 || need+=(pebble)
# the rolling-restart test runs in a private network namespace (unshare, ip)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
