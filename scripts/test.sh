#!/usr/bin/env bash
# The one test command: installs what the tests need that a fresh machine lacks, then runs every
# test of the workspace (unit, vector, scenario and end-to-end tests against SIPp and baresip;
# espeak-ng speaks for the in-band DTMF talk-off test), then fuzzes the HTTP API.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v baresip >/dev/null 2>&1 || missing+=(baresip)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
# The API fuzz run (scripts/api_fuzz.sh) installs Schemathesis into a venv of its own.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The in-band DTMF speech talk-off test skips without espeak-ng; here it is installed, so a
# missing or broken espeak-ng is a failure rather than a silent skip.
export SWITCHBOARD_REQUIRE_ESPEAK=1

# End-to-end tests start their own servers on ports the system picks; they run in parallel.
cargo test --workspace --all-targets --locked "$@"

# The fuzz targets' seeds and saved regressions, replayed without instrumentation (fuzz/ is a
# project of its own; fuzz/README.md has the coverage-guided runs). Not --locked: its lock file
# follows the engine's dependencies, which the workspace lock already pins.
cargo test --manifest-path fuzz/Cargo.toml --release

# The HTTP API fuzzed from its OpenAPI document (Schemathesis) against a running server: no
# 5xx, and every answer documented and matching its schema.
scripts/api_fuzz.sh
