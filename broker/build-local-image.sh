#!/usr/bin/env bash
# Builds a local Mosquitto image without a registry: ./broker/build-local-image.sh [TAG]   (default iotdsd/mosquitto:local)
# The image holds this machine's /usr/sbin/mosquitto, the libraries ldd lists for it, passwd/group, and the
# development profile at the official image's path (/mosquitto/config/mosquitto.conf), so that tests and compose.yaml
# can use it in place of eclipse-mosquitto:2. Needs mosquitto installed and a running Docker engine (DOCKER_HOST).
set -euo pipefail
tag="${1:-iotdsd/mosquitto:local}"
here="$(cd "$(dirname "$0")" && pwd)"
bin=/usr/sbin/mosquitto
[ -x "$bin" ] || { echo "build-local-image.sh: $bin not found (apt-get install mosquitto)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/sbin" "$root/etc" "$root/mosquitto/config" "$root/mosquitto/data" "$root/tmp"
cp "$bin" "$root/usr/sbin/"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
grep -E '^(root|nobody|mosquitto):' /etc/passwd > "$root/etc/passwd" || true
grep -E '^(root|nogroup|mosquitto):' /etc/group > "$root/etc/group" || true
grep -q '^mosquitto:' "$root/etc/passwd" || echo 'mosquitto:x:1883:1883::/mosquitto:/usr/sbin/nologin' >> "$root/etc/passwd"
grep -q '^mosquitto:' "$root/etc/group" || echo 'mosquitto:x:1883:' >> "$root/etc/group"
cp "$here/mosquitto-dev.conf" "$root/mosquitto/config/mosquitto.conf"
chmod 1777 "$root/tmp"
tar -C "$root" -c . | docker import \
  --change 'CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]' \
  --change 'EXPOSE 1883' - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
