#!/usr/bin/env bash
# Fleet measurements on a real Mosquitto with verifier and device processes (docs/operations.md §7 and §9; figures in docs/performance.md §6–§7).
#
#   bench/fleet.sh placement [DEVICES] [TOKENS]  three idle verifiers; loadgen places DEVICES sessions at once right
#                                                after its warm-up sessions close; prints sessions per verifier
#   bench/fleet.sh failover [WILL_DELAY_S]       a greedy session on verifier v1 (edge behind a 15 ms link), v2 joins,
#                                                v1 is SIGKILLed mid-generation; prints failover_ms and checks the text
#                                                against `iotdsd generate`
#
# Needs mosquitto and a Release build (dotnet build IotDsd.sln -c Release); IOTDSD overrides the command, PORT the
# broker's port, IOTDSD_PAIR the shipped model pair (ngram, as the figures were measured). Logs go to a temporary
# directory, named at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
IOTDSD=${IOTDSD:-"dotnet src/IotDsd.Cli/bin/Release/net10.0/iotdsd.dll"}
PORT=${PORT:-18991}
export IOTDSD_PAIR=${IOTDSD_PAIR:-ngram}
case "${1:-}" in
  placement | failover) ;;
  *) awk 'NR > 1 && /^#/ { print } /^set / { exit }' "$0" >&2; exit 2 ;;
esac
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || { echo "fleet.sh: mosquitto not found (apt-get install mosquitto)" >&2; exit 2; }
logs=$(mktemp -d /tmp/iotdsd-fleet.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; echo "logs: $logs"; }
trap cleanup EXIT

sed "s/^listener 1883/listener $PORT/" broker/mosquitto-dev.conf >"$logs/mosquitto.conf"
"$MOSQUITTO" -c "$logs/mosquitto.conf" >"$logs/mosquitto.log" 2>&1 & pids+=($!)
sleep 0.5
broker=127.0.0.1:$PORT

verifier() { # ID [ARGS...]: starts a verifier in the background; its pid in $last
  local id=$1; shift
  $IOTDSD verifier --broker "$broker" --id "$id" "$@" >"$logs/$id.log" 2>&1 & last=$!; pids+=("$last")
}

case "${1:-}" in
  placement)
    devices=${2:-60}; tokens=${3:-40}
    for v in v1 v2 v3; do verifier "$v" --max-batch 64; done
    sleep 6
    $IOTDSD loadgen --broker "$broker" --devices "$devices" --prompt "The meaning of life is" --max-tokens "$tokens" --json \
      >"$logs/loadgen.json" 2>"$logs/loadgen.log"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('sessions by verifier:', d['sessions_by_verifier'])" "$logs/loadgen.json"
    ;;
  failover)
    delay=${2:-5}; tokens=2500; prompt="The meaning of life is"
    $IOTDSD link --listen $((PORT + 1)) --upstream "$broker" --delay-ms 15 >"$logs/link.log" 2>&1 & pids+=($!)
    verifier v1 --will-delay-s "$delay"; v1=$last
    sleep 5
    $IOTDSD edge --broker 127.0.0.1:$((PORT + 1)) --device-id fleet-dev --prompt "$prompt" --max-tokens $tokens \
      --temperature 0 --json >"$logs/edge.json" 2>"$logs/edge.log" & edge=$!
    sleep 6   # the session is placed on v1 before v2 exists, so only a failover brings it to v2
    verifier v2 --will-delay-s "$delay"
    sleep 5
    kill -9 "$v1"
    wait "$edge"
    $IOTDSD generate --prompt "$prompt" --max-tokens $tokens --temperature 0 --json >"$logs/generate.json" 2>/dev/null
    python3 - "$logs/edge.json" "$logs/generate.json" <<'PY'
import json, sys
last = lambda p: json.loads(open(p).read().strip().splitlines()[-1])
edge, ref = last(sys.argv[1]), last(sys.argv[2])
print("failover_ms:", edge["failover_ms"], "verifier:", edge["verifier"], "retries:", edge["retries"],
      "text equals generate:", edge["text"] == ref["text"])
sys.exit(0 if edge["text"] == ref["text"] and edge["verifier"] == "v2" and edge["failover_ms"] else 1)
PY
    ;;
esac
