#!/usr/bin/env bash
# Installs iotdsd as a systemd service: sudo ./devices/install.sh edge|verifier [PUBLISHED_DIR]
#   PUBLISHED_DIR: output of devices/publish.sh (default: artifacts/publish/<this machine's RID>); every file in it is
#   installed into /opt/iotdsd.
#   DESTDIR=/some/root (or IOTDSD_PREFIX): install under that root instead of /, as root or not; nothing is enabled.
#
# The first run installs the program, the unit and the example settings (a broker on this machine) into /etc/iotdsd,
# checks them, and stops: it says what to edit. Run it again after editing: the settings and the unit are checked
# again and the service is enabled and started. Existing files in /etc/iotdsd are never overwritten.
# A check that fails stops the script with exit 2 (settings) or 1 (unit, files); nothing is enabled then.
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
prefix="${DESTDIR:-${IOTDSD_PREFIX:-}}"
prefix="${prefix%/}"
[ -x "$src/iotdsd" ] || { echo "install.sh: no executable at $src/iotdsd; run devices/publish.sh $rid first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || [ -n "$prefix" ] || { echo "install.sh: run as root (sudo), or set DESTDIR to install under another root" >&2; exit 1; }
etc="$prefix/etc/iotdsd"

install -d -m 0755 "$prefix/opt/iotdsd" "$etc" "$prefix/etc/systemd/system"
cp -R "$src/." "$prefix/opt/iotdsd/"
chmod 0755 "$prefix/opt/iotdsd/iotdsd"
[ -f "$here/../README.md" ] && install -m 0644 "$here/../README.md" "$prefix/opt/iotdsd/README.md"
fresh=false
[ -e "$etc/$config" ] || { install -m 0644 "$here/$config" "$etc/$config"; fresh=true; }
[ -e "$etc/$env" ] || install -m 0644 "$here/$env.example" "$etc/$env"
[ "$role" != edge ] || [ -e "$etc/prompts.txt" ] || install -m 0644 "$here/prompts.txt" "$etc/prompts.txt"
# The unit loads this as a credential; empty means no password.
[ -e "$etc/mqtt-password" ] || install -m 0600 /dev/null "$etc/mqtt-password"
install -m 0644 "$here/$unit" "$prefix/etc/systemd/system/$unit"
echo "installed /opt/iotdsd, $unit and /etc/iotdsd/{$config,$env$([ "$role" = edge ] && echo ,prompts.txt),mqtt-password}${prefix:+ under $prefix}"

# Under DESTDIR the settings name /etc/iotdsd/... as they will on the device: check copies that point into DESTDIR.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mapped() { if [ -n "$prefix" ]; then sed -e "s#/etc/iotdsd/#$etc/#g" -e "s#/opt/iotdsd/#$prefix/opt/iotdsd/#g" "$1"; else cat "$1"; fi; }
mapped "$etc/$config" >"$scratch/$config"

# Refuse to enable a service whose settings do not validate: the message names the setting and the fix.
if ! (
  set -a; [ -f "$etc/$env" ] && . <(mapped "$etc/$env"); set +a
  IOTDSD_MQTT__PASSWORDFILE="$etc/mqtt-password" "$prefix/opt/iotdsd/iotdsd" "$subcommand" --config "$scratch/$config" --check-config >"$scratch/check.out"
); then
  echo "install.sh: the settings in $etc/$config (or $etc/$env) do not pass the check above; edit them and run install.sh $role again" >&2
  exit 2
fi
echo "settings checked: $etc/$config passes '$subcommand --check-config'"

# systemd-analyze verify exits 0 on unknown keys and bad values (it only warns), so any output is a finding.
if command -v systemd-analyze >/dev/null; then
  mapped "$prefix/etc/systemd/system/$unit" >"$scratch/$unit"
  if ! systemd-analyze verify "$scratch/$unit" >"$scratch/verify.out" 2>&1 || [ -s "$scratch/verify.out" ]; then
    sed "s#$scratch/#/etc/systemd/system/#g" "$scratch/verify.out" >&2
    echo "install.sh: systemd-analyze verify found the problems above in $unit" >&2
    exit 1
  fi
  echo "unit checked: systemd-analyze verify $unit"
else
  echo "unit not checked: systemd-analyze is not installed"
fi

edit_hint="edit /etc/iotdsd/$config: Mqtt:Broker (now a broker on this machine); for a broker elsewhere also Mqtt:TlsCa (and Mqtt:TlsCert/Mqtt:TlsKey for a client certificate), Mqtt:Username with its password in /etc/iotdsd/mqtt-password$(
  [ "$role" = edge ] && printf '%s' '; Edge:DeviceId (default: the host name) and /etc/iotdsd/prompts.txt' || printf '%s' '; Verifier:Id')"
if [ -n "$prefix" ]; then
  echo "installed under $prefix (nothing enabled). On the device: $edit_hint; then 'systemctl enable --now $unit'"
elif [ "$fresh" = true ]; then
  echo "next: $edit_hint. Then run 'sudo $0 $role${2:+ $2}' again: it checks the settings and enables $unit"
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now "$unit"
  systemctl --no-pager status "$unit" || true
else
  echo "systemd is not running here: enable with 'systemctl enable --now $unit'"
fi
