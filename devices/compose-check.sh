#!/usr/bin/env bash
# Runs compose.yaml end to end and checks it: ./devices/compose-check.sh
#   builds the images (locally, without a registry, unless IOTDSD_MOSQUITTO_IMAGE / IOTDSD_BASE_IMAGE name others),
#   starts the fleet, waits until `iotdsd diag --once --json` shows the three devices online and generating, prints
#   the fleet table, and takes the fleet down again (also on failure).
# Needs a running Docker engine (DOCKER_HOST), Docker Compose v2 (`docker compose`) or v1 (`docker-compose`), mosquitto
# installed (for the local broker image), the .NET SDK, and 127.0.0.1:1883 free. IOTDSD_COMPOSE_TIMEOUT_S bounds the
# wait for the devices (default 180).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
command -v "${compose[0]}" >/dev/null || { echo "compose-check.sh: neither 'docker compose' nor docker-compose is installed" >&2; exit 1; }
if command -v ss >/dev/null && ss -Hltn 'sport = :1883' | grep -q .; then
  echo "compose-check.sh: 127.0.0.1:1883 is in use; compose.yaml's broker needs it (stop the system mosquitto)" >&2
  exit 1
fi
project=iotdsd-check-$$
timeout_s=${IOTDSD_COMPOSE_TIMEOUT_S:-180}

if [ -z "${IOTDSD_MOSQUITTO_IMAGE:-}" ]; then
  bash broker/build-local-image.sh iotdsd/mosquitto:local
  export IOTDSD_MOSQUITTO_IMAGE=iotdsd/mosquitto:local
fi
if [ -z "${IOTDSD_BASE_IMAGE:-}" ]; then
  bash devices/build-local-base.sh iotdsd/runtime-deps:local
  export IOTDSD_BASE_IMAGE=iotdsd/runtime-deps:local
fi
[ -x artifacts/publish/linux-x64/iotdsd ] && [ "${IOTDSD_REPUBLISH:-1}" = 0 ] || bash devices/publish.sh linux-x64 >/dev/null
iotdsd=artifacts/publish/linux-x64/iotdsd
echo "compose-check: images and build ready after $(( $(date +%s) - start )) s"

down() { "${compose[@]}" -p "$project" -f compose.yaml down --remove-orphans >/dev/null 2>&1 || true; }
trap down EXIT
# The classic builder (what docker-compose v1 drives) needs no buildx plugin.
DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} "${compose[@]}" -p "$project" -f compose.yaml up -d --build --quiet-pull 2>&1 | grep -v -i -e deprecat -e 'buildkit' -e '^ *$' || true
up=$(date +%s)

# A device is generating once its retained metrics count rounds; each row of the JSON array is one device or verifier.
generating() {
  "$iotdsd" diag --broker 127.0.0.1:1883 --once --json --wait-ms 1000 2>/dev/null \
    | sed 's/},{"role"/}\n{"role"/g' \
    | grep '^\[\?{"role":"device"' | grep '"state":"online"' | grep -c -E '"rounds":[1-9]' || true
}
while :; do
  n=$(generating)
  [ "$n" -ge 3 ] && break
  if [ $(( $(date +%s) - up )) -ge "$timeout_s" ]; then
    echo "compose-check: only $n of 3 devices generating after $timeout_s s" >&2
    "$iotdsd" diag --broker 127.0.0.1:1883 --once >&2 || true
    "${compose[@]}" -p "$project" -f compose.yaml logs --tail 20 >&2 || true
    exit 1
  fi
  sleep 2
done
"$iotdsd" diag --broker 127.0.0.1:1883 --once
echo "compose-check: 3 devices generating $(( $(date +%s) - up )) s after 'up'"
down
trap - EXIT
echo "compose-check: done in $(( $(date +%s) - start )) s (images, publish, up, check, down)"
