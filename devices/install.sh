#!/usr/bin/env bash
# Installs iotdsd as a systemd service: sudo ./devices/install.sh edge|verifier [PUBLISHED_DIR]
#   PUBLISHED_DIR: output of devices/publish.sh (default: artifacts/publish/<this machine's RID>).
# Existing files in /etc/iotdsd are never overwritten. The settings are checked before the service is enabled.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
role="${1:-}"
case "$role" in
  edge) unit=iotdsd-edge.service; config=edge.json; env=edge.env; subcommand=device ;;
  verifier) unit=iotdsd-verifier.service; config=verifier.json; env=verifier.env; subcommand=verifier ;;
  *) echo "usage: install.sh edge|verifier [PUBLISHED_DIR]" >&2; exit 2 ;;
esac
arch=$(uname -m); rid=$([ "$arch" = aarch64 ] && echo linux-arm64 || echo linux-x64)
src="${2:-$here/../artifacts/publish/$rid}"
prefix="${IOTDSD_PREFIX:-}"   # for a dry run into a scratch root
[ -x "$src/iotdsd" ] || { echo "install.sh: no executable at $src/iotdsd; run devices/publish.sh $rid first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || [ -n "$prefix" ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }

install -d -m 0755 "$prefix/opt/iotdsd" "$prefix/etc/iotdsd" "$prefix/etc/systemd/system"
install -m 0755 "$src/iotdsd" "$prefix/opt/iotdsd/iotdsd"
find "$src" -maxdepth 1 -type f ! -name iotdsd -exec install -m 0644 {} "$prefix/opt/iotdsd/" \;
[ -f "$here/../README.md" ] && install -m 0644 "$here/../README.md" "$prefix/opt/iotdsd/README.md"
[ -e "$prefix/etc/iotdsd/$config" ] || install -m 0644 "$here/$config" "$prefix/etc/iotdsd/$config"
[ -e "$prefix/etc/iotdsd/$env" ] || install -m 0644 "$here/edge.env.example" "$prefix/etc/iotdsd/$env"
[ "$role" != edge ] || [ -e "$prefix/etc/iotdsd/prompts.txt" ] || install -m 0644 "$here/prompts.txt" "$prefix/etc/iotdsd/prompts.txt"
# The unit loads this as a credential; empty means no password.
[ -e "$prefix/etc/iotdsd/mqtt-password" ] || install -m 0600 /dev/null "$prefix/etc/iotdsd/mqtt-password"
install -m 0644 "$here/$unit" "$prefix/etc/systemd/system/$unit"

# Refuse to enable a service whose settings do not validate: the message names the setting and the fix.
set -a; [ -f "$prefix/etc/iotdsd/$env" ] && . "$prefix/etc/iotdsd/$env"; set +a
IOTDSD_MQTT__PASSWORDFILE="$prefix/etc/iotdsd/mqtt-password" \
  "$prefix/opt/iotdsd/iotdsd" "$subcommand" --config "$prefix/etc/iotdsd/$config" --check-config

if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$prefix/etc/systemd/system/$unit" 2>&1 | grep -v -e 'Command /opt/iotdsd/iotdsd is not executable' >&2 || true
fi
if [ -z "$prefix" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now "$unit"
  systemctl --no-pager status "$unit" || true
else
  echo "installed under '${prefix:-/}'; systemd is not running here: enable with 'systemctl enable --now $unit'"
fi
