#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with Schemathesis: every documented
# operation gets generated requests (valid and invalid), and each answer must be no 5xx, a
# documented status code, of the documented content type, and match the documented schema.
#
# What it does:
#  1. a Python venv in target/schemathesis-venv with a pinned Schemathesis (kept between runs);
#  2. `cargo build` of the switchboard binary (debug; SWITCHBOARD_PROFILE=release for the
#     release one), started on 127.0.0.1 ports the system picks (port 0, read back from the
#     ready file), with its own temporary data folder: the shipped configuration
#     (sip-config/switchboard.yaml: accounts, agents, skill groups, trunk) and a copy of the
#     shipped flows, so the agent, queue and flow operations have something to work on;
#  3. an admin token from `switchboard token create`, and the run;
#  4. the server is stopped and the folder removed on exit, however the script ends.
#
# Left out of the run, because they would break it rather than test anything:
#  - DELETE /api/v1/tokens/{id}: the stateful phase can feed it the id of the run's own token
#    (from GET /api/v1/tokens), after which every request is 401;
#  - GET /api/v1/events: a Server-Sent Events stream that never ends.
# One worker: with two, Hypothesis parses Python source in two threads at once, which CPython
# before 3.11.8 can fail with "AST constructor recursion depth mismatch" (a crash of the tool,
# not a finding); one worker costs about ten seconds at the default size.
# Checks that need wrong credentials (`ignored_auth`) are not run: ten wrong tokens a minute
# from one address make the server answer 429 to that address, the run's own requests included.
#
# `--checks all --exclude-checks ignored_auth` (as extra arguments) adds the checks that a request
# the document allows is accepted and one it forbids is refused. The document states the
# constraints the handlers apply (an empty query value is the parameter not given), so what those
# still report are refusals no static schema can foresee: a `cursor` this API did not return,
# a report range with `from` after `to` or over 400 days, an unknown `tz`, a flow or test YAML
# that does not validate, a break, flow, skill group or agent name the configuration does not
# have, and click-to-dial's "exactly one of flow, skill_group and agent". They are left out of
# the default run for that reason.
#
# Extra arguments go to `schemathesis run` (e.g. `--seed 1`, `--include-path-regex flows`,
# `--report junit --report-dir /abs/path`: it runs in the temporary folder, so give absolute
# paths); API_FUZZ_MAX_EXAMPLES sets the examples per operation (default 100, about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
venv=target/schemathesis-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  echo "scripts/api_fuzz.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
py="$venv/bin/python"

profile=${SWITCHBOARD_PROFILE:-debug}
if [ "$profile" = release ]; then
  cargo build --locked --release --bin switchboard
else
  cargo build --locked --bin switchboard
fi
bin="$repo/target/$profile/switchboard"

work=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-api-fuzz.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    # A bounded wait for a clean stop, then no more patience.
    for _ in $(seq 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The shipped configuration, moved into the temporary folder and onto ports the system picks.
cp -r ivr-flows "$work/flows"
"$py" - "$repo" "$work" <<'EOF'
import sys, yaml
repo, work = sys.argv[1], sys.argv[2]
with open(f"{repo}/sip-config/switchboard.yaml") as f:
    c = yaml.safe_load(f)
c["sip"]["listen"] = [
    {"transport": "udp", "address": "127.0.0.1:0"},
    {"transport": "tcp", "address": "127.0.0.1:0"},
]
c["http"]["listen"] = "127.0.0.1:0"
c["database"]["url"] = f"sqlite://{work}/switchboard.db"
c["media"]["prompts_dir"] = f"{repo}/prompts"
c["media"]["recordings_dir"] = f"{work}/recordings"
c["ivr"]["flows_dir"] = f"{work}/flows"
with open(f"{work}/switchboard.yaml", "w") as f:
    yaml.safe_dump(c, f, sort_keys=False)
EOF

(cd "$work" && exec "$bin" --config "$work/switchboard.yaml" --ready-file "$work/ready.json" \
  >"$work/server.log" 2>&1) &
server_pid=$!
for _ in $(seq 300); do
  [ -f "$work/ready.json" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "scripts/api_fuzz.sh: the server exited before it was ready:" >&2
    tail -n 30 "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ ! -f "$work/ready.json" ]; then
  echo "scripts/api_fuzz.sh: the server was not ready within 30 s:" >&2
  tail -n 30 "$work/server.log" >&2
  exit 1
fi
http=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["http"])' "$work/ready.json")
token=$(cd "$work" && "$bin" token create --role admin --name api-fuzz --config "$work/switchboard.yaml")

echo "scripts/api_fuzz.sh: fuzzing http://$http/api/v1 (server log: kept only on failure)"
status=0
# Run from the temporary folder, where Schemathesis and Hypothesis leave their caches.
(cd "$work" && exec "$repo/$venv/bin/schemathesis" run "http://$http/api/v1/openapi.json" \
  --url "http://$http" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path '/api/v1/tokens/{id}' \
  --exclude-path /api/v1/events \
  --max-examples "${API_FUZZ_MAX_EXAMPLES:-100}" \
  --workers 1 \
  --request-timeout 10 \
  --suppress-health-check all \
  --no-color \
  "$@") || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "scripts/api_fuzz.sh: the server died during the run" >&2
  status=1
fi
if grep -q "panicked" "$work/server.log"; then
  echo "scripts/api_fuzz.sh: the server panicked:" >&2
  grep -A5 "panicked" "$work/server.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "--- the server's log (last 40 lines) ---" >&2
  tail -n 40 "$work/server.log" >&2
fi
exit "$status"
