#!/usr/bin/env bash
# Builds a local stand-in for the .NET runtime-deps image without a registry:
#   ./devices/build-local-base.sh [TAG]   (default iotdsd/runtime-deps:local)
# The image holds this machine's files of the packages the official mcr.microsoft.com/dotnet/runtime-deps image
# installs (libc6, libgcc-s1, libstdc++6, libicu, libssl3, zlib1g, tzdata, the CA bundle), a passwd with the same
# unprivileged user (app, uid 1654) and a /tmp, imported with `docker import`. A self-contained iotdsd runs on it:
#   docker build --build-arg BASE_IMAGE=iotdsd/runtime-deps:local -f devices/Dockerfile .
# Needs a Debian-family machine with those packages installed and a running Docker engine (DOCKER_HOST).
set -euo pipefail
tag="${1:-iotdsd/runtime-deps:local}"
command -v dpkg-query >/dev/null || { echo "build-local-base.sh: needs dpkg (a Debian-family machine)" >&2; exit 1; }
icu=$(dpkg-query -W -f '${Package}\n' 'libicu[0-9]*' 2>/dev/null | grep -E '^libicu[0-9]+$' | head -1 || true)
packages=(libc6 libgcc-s1 libstdc++6 libssl3 zlib1g tzdata ${icu})
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || { echo "build-local-base.sh: package $p is not installed (apt-get install $p)" >&2; exit 1; }
done
[ -n "$icu" ] || { echo "build-local-base.sh: no libicuNN package is installed (apt-get install libicu72)" >&2; exit 1; }
[ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "build-local-base.sh: no CA bundle (apt-get install ca-certificates)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# Copy each packaged file (not directories) to its canonical path: on a merged-/usr system /lib is a link to usr/lib,
# and the image gets the same links rather than two copies.
dpkg-query -L "${packages[@]}" | sort -u | while IFS= read -r path; do
  [ -f "$path" ] || [ -L "$path" ] || continue
  [ -d "$path" ] && continue
  dir=$(readlink -f "$(dirname "$path")")
  mkdir -p "$root$dir"
  cp -a "$path" "$root$dir/"
done
for link in bin sbin lib lib64; do
  if [ -L "/$link" ]; then
    rm -rf "${root:?}/$link"
    ln -s "$(readlink "/$link")" "$root/$link"
  fi
done
mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/app"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:1654:1654::/home/app:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\napp:x:1654:\n' >"$root/etc/group"
chown 1654:1654 "$root/home/app"
chmod 1777 "$root/tmp"
tar -C "$root" -c . | docker import --change 'ENV APP_UID=1654' - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
