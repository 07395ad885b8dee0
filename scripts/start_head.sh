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
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$TOKEN_PATH" ]; then
  "$RAY_BIN" get-auth-token --generate > /dev/null
  chmod 600 "$TOKEN_PATH"
  echo "generated a cluster token in $TOKEN_PATH (copy it to every worker and client)"
fi
# A new session: the node's processes get a process group of their own, which stop.sh
# can stop without touching anything else (the caller's shell, other Ray nodes).
setsid --wait "$RAY_BIN" start --head --port="$PORT" \
  --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
  --metrics-export-port="$METRICS_PORT" --temp-dir="$RAY_TMP" "$@"
PGID="$(new_node_pgid "$RAY_TMP")" || { echo "error: Ray head did not start" >&2; exit 1; }
echo "$PGID" > "$STATE_DIR/head.pgid"
HOST_IP="$("$REPO/.venv/bin/python" -c 'import ray._private.services as s; print(s.get_node_ip_address())' 2>/dev/null || hostname -I | awk '{print $1}')"
cat > "$STATE_DIR/head.env" <<ENV
HEAD_ADDRESS=$HOST_IP:$PORT
DASHBOARD_URL=http://127.0.0.1:$DASHBOARD_PORT
METRICS_URL=http://127.0.0.1:$METRICS_PORT/metrics
RAY_TMP=$RAY_TMP
ENV
echo
echo "Metatune head is up (token auth on)."
echo "  workers:   scripts/start_worker.sh $HOST_IP:$PORT   (with $TOKEN_PATH copied there)"
echo "  dashboard: http://127.0.0.1:$DASHBOARD_PORT  (from your laptop: ssh -L $DASHBOARD_PORT:127.0.0.1:$DASHBOARD_PORT <head>)"
echo "  submit:    scripts/submit.sh --preset smoke --data synthetic"
echo "  stop:      scripts/stop.sh"
