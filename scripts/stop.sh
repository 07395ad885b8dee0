#!/usr/bin/env bash
# Stop only the Ray nodes that start_head.sh / start_worker.sh started on this machine
# (each recorded by its process group), not any other Ray on it.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
shopt -s nullglob
files=("$STATE_DIR"/worker-*.pgid "$STATE_DIR"/head.pgid)
if [ ${#files[@]} -eq 0 ]; then
  echo "nothing to stop: no node started by these scripts is recorded in $STATE_DIR"
  exit 0
fi
for f in "${files[@]}"; do
  pgid="$(cat "$f")"
  kill -TERM -- "-$pgid" 2>/dev/null || true
done
for _ in $(seq 1 20); do
  alive=0
  for f in "${files[@]}"; do kill -0 -- "-$(cat "$f")" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && break
  sleep 0.5
done
for f in "${files[@]}"; do
  kill -KILL -- "-$(cat "$f")" 2>/dev/null || true  # what ignored SIGTERM for 10 s
  echo "stopped Ray node group $(cat "$f") ($(basename "$f" .pgid))"
  rm -f "$f"
done
rm -f "$STATE_DIR/head.env"
