#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need, then runs them all.
#
# - Chromium, for the dashboard's browser test (tests/node/dashboard_browser.rs), from
#   Debian's packages when it is missing (needs root, as on the project's machines and CI);
# - then `cargo test --workspace` with any extra arguments given to this script (e.g. -j 2).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && [ -z "${TIMED_CHROMIUM:-}" ]; then
  echo "test.sh: installing chromium (Debian package) for the dashboard's browser test" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

exec cargo test --workspace "$@"
