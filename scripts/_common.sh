# Shared by the cluster scripts: where Ray lives, where we record what we started.
# Token authentication is on for every cluster these scripts start or talk to.
export RAY_AUTH_MODE=token
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAY_BIN="${RAY_BIN:-$(command -v ray || true)}"
if [ -z "$RAY_BIN" ] && [ -x "$REPO/.venv/bin/ray" ]; then RAY_BIN="$REPO/.venv/bin/ray"; fi
if [ -z "$RAY_BIN" ]; then
  echo "error: no 'ray' command; run 'make install' (or activate the venv with Metatune)" >&2
  exit 2
fi
# Jobs find this environment's python/metatune through PATH.
export PATH="$(dirname "$RAY_BIN"):$PATH"
PY="$(dirname "$RAY_BIN")/python"
STATE_DIR="${METATUNE_CLUSTER_DIR:-$HOME/.metatune/cluster}"
RAY_TMP="${METATUNE_RAY_TMP:-/tmp/metatune-ray}"
TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
mkdir -p "$STATE_DIR"

# Keep the cluster token private: whoever can read it can run code on the cluster.
secure_token() {
  local mode
  [ -f "$TOKEN_PATH" ] || return 0
  mode="$(stat -c %a "$TOKEN_PATH")"
  if [ "$mode" != "600" ] && [ "$mode" != "400" ]; then
    chmod 600 "$TOKEN_PATH"
    echo "warning: $TOKEN_PATH was mode $mode (readable by others); it is now 600" >&2
  fi
}

# Fail with one line if TCP port $1 is taken; $2 names the variable that changes it.
require_free_port() {
  if ! "$PY" -c 'import socket, sys; s = socket.socket(); s.bind(("", int(sys.argv[1])))' "$1" \
      2>/dev/null; then
    echo "error: port $1 is in use (another Ray or service?); set $2 to a free port" >&2
    exit 2
  fi
}

# `ray start "$@"` in a session of its own: the node's processes form one process group that
# stop.sh can stop without touching anything else (the caller's shell, other Ray nodes).
# Ray gives a new raylet a fixed 30 s to register with the GCS, which a loaded machine can
# miss; that failed start leaves its processes running. They are stopped and the start is
# tried once more. Any other failure is final (and also leaves nothing running).
start_ray() {
  local log pid attempt
  log="$(mktemp)"
  for attempt in 1 2; do
    setsid --wait "$RAY_BIN" start "$@" > "$log" 2>&1 &
    pid=$!  # not a group leader, so setsid does not fork: this is the session's id
    if wait "$pid"; then
      cat "$log"; rm -f "$log"; return 0
    fi
    cat "$log" >&2
    stop_session "$pid"
    if [ "$attempt" = 2 ] || ! grep -q "timed out during startup" "$log"; then
      rm -f "$log"; return 1
    fi
    echo "warning: the Ray node did not register within Ray's 30 s (a loaded machine?);" \
         "stopped what it had started; trying once more" >&2
  done
}

# Stop every process of session $1 (TERM, then KILL after 10 s), and wait until they are gone.
stop_session() {
  local _
  pkill -TERM -s "$1" 2>/dev/null || return 0
  for _ in $(seq 20); do
    pgrep -s "$1" > /dev/null || return 0
    sleep 0.5
  done
  pkill -KILL -s "$1" 2>/dev/null || true
  sleep 0.5
}

# The process group of the Ray node whose raylet mentions $1 and that we do not know yet.
new_node_pgid() {
  local known own pid pgid
  known=" $(cat "$STATE_DIR"/*.pgid 2>/dev/null | awk '{print $1}' | tr '\n' ' ') "
  own="$(ps -o pgid= -p $$ | tr -d ' ')"
  for pid in $(pgrep -f -- "raylet.*$1" || true); do
    pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')" || continue
    # never our own group: stopping it would stop the caller
    if [ -n "$pgid" ] && [ "$pgid" != "$own" ] && [[ "$known" != *" $pgid "* ]]; then
      echo "$pgid"; return 0
    fi
  done
  return 1
}

# True if process group $1 still holds a raylet mentioning $2 (the node we recorded).
is_our_node() {
  [ -n "$1" ] && [ -n "$2" ] && pgrep -g "$1" -f -- "raylet.*$2" > /dev/null 2>&1
}
