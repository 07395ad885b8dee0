#!/usr/bin/env bash
# Join this machine to a Metatune Ray cluster as a worker node.
#   scripts/start_worker.sh HEAD_ADDRESS [ray start args...]   e.g. 10.0.0.5:6379
# Needs the head's token: copy ~/.ray/auth_token from the head (or set RAY_AUTH_TOKEN).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
if [ $# -lt 1 ]; then
  echo "usage: scripts/start_worker.sh HEAD_ADDRESS [ray start args...]" >&2
  exit 2
fi
HEAD="$1"; shift
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$TOKEN_PATH" ]; then
  echo "error: no cluster token at $TOKEN_PATH; copy it from the head" \
       "(scp HEAD:~/.ray/auth_token $TOKEN_PATH) or set RAY_AUTH_TOKEN" >&2
  exit 2
fi
secure_token
start_ray --address="$HEAD" "$@" || exit 1  # own process group, as for the head
# A worker on a machine that also runs the head shares its temp dir; find our new raylet.
MARK="$RAY_TMP"
PGID="$(new_node_pgid "$MARK")" || { MARK="session_"; PGID="$(new_node_pgid "$MARK")"; } || {
  echo "error: the worker did not start" >&2; exit 1; }
echo "$PGID $MARK" > "$STATE_DIR/worker-$PGID.pgid"
echo "worker joined $HEAD (recorded in $STATE_DIR/worker-$PGID.pgid)"
