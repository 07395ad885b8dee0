#!/usr/bin/env bash
# Submit a Metatune search to the cluster with `ray job submit`; the driver runs on the head.
#   scripts/submit.sh [metatune run args...]      e.g. --preset smoke --data synthetic
# Env: RAY_API_SERVER_ADDRESS (dashboard URL, default http://127.0.0.1:8265),
#      METATUNE_RESULTS / METATUNE_DATA (folders on the head; default ~/metatune_results, ~/metatune_data)
set -euo pipefail
source "$(dirname "$0")/_common.sh"
ADDRESS="${RAY_API_SERVER_ADDRESS:-http://127.0.0.1:8265}"
NAME="" PRESET="smoke" STORAGE="${METATUNE_RESULTS:-~/metatune_results}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --name) NAME="${args[$((i + 1))]:-}" ;;
    --name=*) NAME="${args[$i]#--name=}" ;;
    --preset) PRESET="${args[$((i + 1))]:-}" ;;
    --preset=*) PRESET="${args[$i]#--preset=}" ;;
    --storage) STORAGE="${args[$((i + 1))]:-}" ;;
    --storage=*) STORAGE="${args[$i]#--storage=}" ;;
  esac
done
NAME="${NAME:-metatune-$PRESET}"
ID="${NAME}-$(date +%Y%m%d-%H%M%S)"
[[ "$ID" == metatune* ]] || ID="metatune-$ID"
RUNTIME_ENV=$(cat <<JSON
{"excludes": [".venv", ".git", "results", "data", "*.egg-info", "__pycache__", ".pytest_cache"],
 "env_vars": {"METATUNE_RESULTS": "$STORAGE", "METATUNE_DATA": "${METATUNE_DATA:-~/metatune_data}",
              "HF_HUB_OFFLINE": "${HF_HUB_OFFLINE:-0}", "HF_DATASETS_OFFLINE": "${HF_DATASETS_OFFLINE:-0}",
              "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}}
JSON
)
METADATA="{\"tool\": \"metatune\", \"experiment\": \"$NAME\", \"storage\": \"$STORAGE\"}"
"$RAY_BIN" job submit --address "$ADDRESS" --submission-id "$ID" --no-wait \
  --working-dir "$REPO" --runtime-env-json "$RUNTIME_ENV" --metadata-json "$METADATA" \
  -- python -m tune_jobs.cli run "$@" --name "$NAME"
echo
echo "job id:     $ID"
echo "experiment: $NAME (results on the head under $STORAGE/$NAME)"
echo "follow:     ray job logs -f $ID --address $ADDRESS"
echo "dashboard:  $ADDRESS/#/jobs/$ID   (ssh -L 8265:127.0.0.1:8265 <head> first, if remote)"
echo "status:     metatune status --address $ADDRESS"
