#!/usr/bin/env bash
# The web page's browser test drives Debian's Chromium (Playwright's own browser download cannot work
# here). Installs it when missing and this runs as root; otherwise says why the browser tests will skip
# (outside CI) or fail (CI=true).
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${RAG_CHROMIUM:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (apt-get, a few minutes)"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y chromium >/dev/null || \
     { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }; then
    exit 0
  fi
  echo "apt-get could not install chromium" >&2
else
  echo "chromium is missing and this is not root with apt-get: install it (apt-get install chromium) or set RAG_CHROMIUM=/path/to/chromium" >&2
fi
echo "the browser tests (tests/test_web_ui.py) will skip, or fail when CI=true" >&2
exit 0
