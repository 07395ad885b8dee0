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
STATE_DIR="${METATUNE_CLUSTER_DIR:-$HOME/.metatune/cluster}"
RAY_TMP="${METATUNE_RAY_TMP:-/tmp/metatune-ray}"
TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
mkdir -p "$STATE_DIR"

# The process group of the Ray node whose processes mention $1 and that we do not know yet.
new_node_pgid() {
  local known=" $(cat "$STATE_DIR"/*.pgid 2>/dev/null | tr '\n' ' ') "
  local pid pgid
  local own="$(ps -o pgid= -p $$ | tr -d ' ')"
  for pid in $(pgrep -f -- "raylet.*$1" || true); do
    pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
    # never our own group: stopping it would stop the caller
    if [ -n "$pgid" ] && [ "$pgid" != "$own" ] && [[ "$known" != *" $pgid "* ]]; then
      echo "$pgid"; return 0
    fi
  done
  return 1
}
