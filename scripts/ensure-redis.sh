#!/usr/bin/env bash
# The tests start their own redis-server, and build their own Redis cluster with redis-cli; install
# both from Debian's packages when either is missing (redis-server's package brings redis-cli).
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server or redis-cli not found: installing them from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    exit 0
fi
echo "redis-server or redis-cli is missing. Install them (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run make again." >&2
exit 1
