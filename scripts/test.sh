#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need, then runs them all.
#
# - Chromium, for the dashboard's browser test (tests/node/dashboard_browser.rs), and promtool,
#   for the metrics test (`promtool check metrics` in tests/node/node_operator.rs), from Debian's
#   packages (chromium; prometheus, which holds promtool) when they are missing (needs root, as
#   on the project's machines and CI);
# - then `cargo test --workspace` with any extra arguments given to this script (e.g. -j 2).
set -euo pipefail
cd "$(dirname "$0")/.."

need_chromium=false need_promtool=false
if ! command -v chromium >/dev/null 2>&1 && [ -z "${TIMED_CHROMIUM:-}" ]; then need_chromium=true; fi
if ! command -v promtool >/dev/null 2>&1; then need_promtool=true; fi
if $need_chromium || $need_promtool; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
fi
if $need_chromium; then
  echo "test.sh: installing chromium (Debian package) for the dashboard's browser test" >&2
  apt-get install -y -qq chromium >/dev/null
fi
if $need_promtool; then
  # The package also holds the Prometheus server (started as a service only where an init system
  # runs services); the tests use promtool alone.
  echo "test.sh: installing promtool (Debian package prometheus) for the metrics test" >&2
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

exec cargo test --workspace "$@"
