#!/usr/bin/env bash
# Stop only the Ray nodes that start_head.sh / start_worker.sh started on this machine (each
# recorded by its process group and the raylet it held), not any other Ray on it. A record whose
# group no longer holds that raylet (a reboot, a node stopped otherwise) is dropped untouched.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
shopt -s nullglob
files=("$STATE_DIR"/worker-*.pgid "$STATE_DIR"/head.pgid)
if [ ${#files[@]} -eq 0 ]; then
  echo "nothing to stop: no node started by these scripts is recorded in $STATE_DIR"
  exit 0
fi
live=()
for f in "${files[@]}"; do
  read -r pgid mark < "$f" || true
  if is_our_node "$pgid" "${mark:-}"; then
    live+=("$f")
    kill -TERM -- "-$pgid" 2>/dev/null || true
  else
    echo "not stopping process group ${pgid:-?} ($(basename "$f" .pgid)): it no longer holds the" \
         "Ray node recorded there; dropping the stale record"
    rm -f "$f"
  fi
done
for _ in $(seq 1 20); do
  alive=0
  for f in "${live[@]}"; do read -r pgid _ < "$f"; kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && break
  sleep 0.5
done
for f in "${live[@]}"; do
  read -r pgid _ < "$f"
  kill -KILL -- "-$pgid" 2>/dev/null || true  # what ignored SIGTERM for 10 s
  echo "stopped Ray node group $pgid ($(basename "$f" .pgid))"
  rm -f "$f"
done
rm -f "$STATE_DIR/head.env"
