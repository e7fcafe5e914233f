#!/usr/bin/env bash
# System packages the test suite needs (idempotent; `make test` runs it).
#
# - postgresql: tests/node/test_history.py starts a throwaway PostgreSQL
#   server (initdb + postgres from /usr/lib/postgresql/*/bin) to test the
#   history store's PostgreSQL backend against a real server.
# - chromium: tests/node/test_web_ui.py drives Debian's Chromium
#   (/usr/bin/chromium) with Playwright to test the web UI end to end
#   (Playwright's own browser download is not used).
#
# Installs only when running as root and something is missing; otherwise it
# says what is missing and leaves it to the user (the tests that need it
# skip outside CI and fail in CI).
set -euo pipefail

missing=()
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
    missing+=(postgresql)
fi
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-system: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 0
fi

echo "setup-system: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian package may start a cluster of its own; the tests start their own
# server on a free port and do not need it.
