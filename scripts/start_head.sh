#!/usr/bin/env bash
# Start a Ray head node for Metatune: token authentication on, dashboard on 127.0.0.1 only
# (reach it through an SSH tunnel), CPUs/GPUs detected by Ray. Extra args go to `ray start`.
#   scripts/start_head.sh [--num-cpus N] [--num-gpus N] ...
# Env: RAY_PORT (6379), DASHBOARD_PORT (8265), METRICS_PORT (8080), METATUNE_RAY_TMP.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
PORT="${RAY_PORT:-6379}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
METRICS_PORT="${METRICS_PORT:-8080}"
if [ -f "$STATE_DIR/head.env" ]; then
  echo "error: a head started by these scripts is recorded in $STATE_DIR/head.env;" \
       "run scripts/stop.sh first" >&2
  exit 2
fi
# Ray would quietly move a busy dashboard to another port and announce the wrong URL.
require_free_port "$PORT" RAY_PORT
require_free_port "$DASHBOARD_PORT" DASHBOARD_PORT
require_free_port "$METRICS_PORT" METRICS_PORT
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$TOKEN_PATH" ]; then
  (umask 077 && "$RAY_BIN" get-auth-token --generate > /dev/null)
  echo "generated a cluster token in $TOKEN_PATH (copy it to every worker and client)"
fi
secure_token
start_ray --head --port="$PORT" \
  --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
  --metrics-export-port="$METRICS_PORT" --temp-dir="$RAY_TMP" "$@" || exit 1
PGID="$(new_node_pgid "$RAY_TMP")" || { echo "error: Ray head did not start" >&2; exit 1; }
# From here on a failure takes the half-started head down again.
undo() {
  kill -TERM -- "-$PGID" 2>/dev/null || true
  rm -f "$STATE_DIR/head.pgid" "$STATE_DIR/head.env"
  echo "error: the head did not come up completely; it was stopped again" >&2
}
trap undo ERR
echo "$PGID $RAY_TMP" > "$STATE_DIR/head.pgid"
HOST_IP="$("$PY" -c 'import ray.util; print(ray.util.get_node_ip_address())')"
# Say where it really is: the dashboard must answer on the port we asked for.
"$PY" - "$DASHBOARD_PORT" <<'PYCODE'
import sys, time, requests
url = f"http://127.0.0.1:{sys.argv[1]}/api/version"
for _ in range(60):
    try:
        requests.get(url, timeout=2)
        sys.exit(0)
    except requests.RequestException:
        time.sleep(0.5)
print(f"error: no dashboard answers at {url}", file=sys.stderr)
sys.exit(1)
PYCODE
cat > "$STATE_DIR/head.env" <<ENV
HEAD_ADDRESS=$HOST_IP:$PORT
DASHBOARD_URL=http://127.0.0.1:$DASHBOARD_PORT
METRICS_URL=http://127.0.0.1:$METRICS_PORT/metrics
RAY_TMP=$RAY_TMP
ENV
trap - ERR
echo
echo "Metatune head is up (token auth on)."
echo "  workers:   scripts/start_worker.sh $HOST_IP:$PORT   (with $TOKEN_PATH copied there)"
echo "  dashboard: http://127.0.0.1:$DASHBOARD_PORT  (from your laptop: ssh -L $DASHBOARD_PORT:127.0.0.1:$DASHBOARD_PORT <head>)"
echo "  metrics:   http://127.0.0.1:$METRICS_PORT/metrics"
echo "  submit:    scripts/submit.sh --preset smoke --data synthetic"
echo "  stop:      scripts/stop.sh"
