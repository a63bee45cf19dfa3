#!/usr/bin/env bash
# Installs the headless browser the browser tests drive (tests/integration/browser_support.py):
# Debian's chromium, talked to over its DevTools protocol, so no driver package is needed.
# Does nothing when a chromium is already on PATH.
set -euo pipefail
for cmd in chromium chromium-browser; do
  command -v "$cmd" >/dev/null && exit 0
done
command -v apt-get >/dev/null || { echo "browser: install chromium (no apt-get here)" >&2; exit 2; }
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "browser: installing chromium" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
