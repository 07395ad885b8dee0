#!/usr/bin/env bash
# Submit a Metatune search to the cluster with `ray job submit`; the driver runs on the head.
#   scripts/submit.sh [metatune run args...]      e.g. --preset smoke --data synthetic
# Env: RAY_API_SERVER_ADDRESS (dashboard URL, default http://127.0.0.1:8265),
#      METATUNE_RESULTS / METATUNE_DATA (folders on the head; default ~/metatune_results, ~/metatune_data)
set -euo pipefail
source "$(dirname "$0")/_common.sh"
ADDRESS="${RAY_API_SERVER_ADDRESS:-http://127.0.0.1:8265}"
PLAN="$(mktemp -d)"
trap 'rm -rf "$PLAN"' EXIT
# The name, storage, runtime env and metadata come from the spec code that the job itself runs.
"$(dirname "$RAY_BIN")/python" -m tune_jobs.cli.job_plan --address "$ADDRESS" --out "$PLAN" -- "$@" \
  || exit 2
ID="$(cat "$PLAN/id")"
NAME="$(cat "$PLAN/name")"
STORAGE="$(cat "$PLAN/storage")"
# A head that has just started (or a busy one) may not have its job agent registered yet: Ray
# answers "No available agent to submit job, please try again later". That is retried for up
# to a minute; any other failure is final. (No job exists after that answer, so the same
# submission id is reused.)
ATTEMPTS=12 PAUSE="${METATUNE_SUBMIT_RETRY_S:-5}"
for attempt in $(seq 1 "$ATTEMPTS"); do
  if OUT="$("$RAY_BIN" job submit --address "$ADDRESS" --submission-id "$ID" --no-wait \
      --working-dir "$REPO" --runtime-env-json "$(cat "$PLAN/runtime_env.json")" \
      --metadata-json "$(cat "$PLAN/metadata.json")" \
      -- python -m tune_jobs.cli run "$@" --name "$NAME" 2>&1)"; then
    echo "$OUT"
    break
  fi
  if [[ "$OUT" == *"No available agent"* ]] && [ "$attempt" -lt "$ATTEMPTS" ]; then
    echo "the cluster's job agent is not ready yet; retrying in $PAUSE s ($attempt/$ATTEMPTS)" >&2
    sleep "$PAUSE"
    continue
  fi
  echo "$OUT" >&2
  exit 1
done
echo
echo "job id:     $ID"
echo "experiment: $NAME (results on the head under $STORAGE/$NAME)"
echo "follow:     ray job logs -f $ID --address $ADDRESS"
echo "dashboard:  $ADDRESS/#/jobs/$ID   (ssh -L 8265:127.0.0.1:8265 <head> first, if remote)"
echo "status:     metatune status --dashboard $ADDRESS"
