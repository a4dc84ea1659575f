#!/usr/bin/env bash
# The seed's load test (KServe's KEDA tutorial) against the simulated fleet:
#   hey -z 30s -c 5 -m POST -host $SERVICE_HOSTNAME -H "Content-Type: application/json" -d '{...}' \
#       http://$INGRESS_HOST:$INGRESS_PORT/openai/v1/chat/completions
#
# Usage: load/hey.sh [BASE_URL]        BASE_URL defaults to http://127.0.0.1:8000 (keda-llm-scaler sim-fleet)
# Environment: DURATION (30s), CONCURRENCY (5), MAX_TOKENS (100), MODEL (qwen),
#              SERVICE_HOSTNAME (huggingface-qwen.default.example.com), HEY (hey).
# Only loopback addresses are accepted: this drives the simulator, not a real cluster.
set -euo pipefail

base="${1:-http://127.0.0.1:8000}"
case "$base" in
  http://127.0.0.1:*|http://127.0.0.1/*|http://127.0.0.1|http://localhost:*|http://localhost|http://\[::1\]:*) ;;
  *) echo "hey.sh: refusing $base: only loopback URLs (the simulated fleet)" >&2; exit 2 ;;
esac
hey_bin="${HEY:-hey}"
if ! command -v "$hey_bin" >/dev/null 2>&1; then
  echo "hey.sh: '$hey_bin' not found; install it with: apt-get install -y hey" >&2
  exit 127
fi

body=$(cat <<JSON
{"model": "${MODEL:-qwen}", "messages": [{"role": "system", "content": "You are a helpful assistant that speaks like Shakespeare."},{"role": "user", "content": "Write a poem about colors"}], "stream": false, "max_tokens": ${MAX_TOKENS:-100}}
JSON
)

exec "$hey_bin" -z "${DURATION:-30s}" -c "${CONCURRENCY:-5}" -m POST \
  -host "${SERVICE_HOSTNAME:-huggingface-qwen.default.example.com}" \
  -H "Content-Type: application/json" \
  -d "$body" \
  "${base%/}/openai/v1/chat/completions"
