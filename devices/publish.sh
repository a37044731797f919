#!/usr/bin/env bash
# Publishes a self-contained iotdsd for a device or server: ./devices/publish.sh [RID] [OUT]
#   RID: linux-arm64 (Raspberry Pi 4/5, 64-bit OS; default) or linux-x64. OUT default: artifacts/publish/RID.
# Not trimmed: MessagePack's serializers need the contract types' metadata (a trimmed build silently broke a message
# type). Single file, with the native ONNX Runtime library bundled and extracted on first start into
# DOTNET_BUNDLE_EXTRACT_BASE_DIR (the systemd units point it at the cache directory).
set -euo pipefail
cd "$(dirname "$0")/.."
rid="${1:-linux-arm64}"
out="${2:-artifacts/publish/$rid}"
case "$rid" in linux-arm64|linux-x64) ;; *) echo "publish.sh: RID must be linux-arm64 or linux-x64, got '$rid'" >&2; exit 2;; esac
dotnet publish src/IotDsd.Cli -c Release -r "$rid" --self-contained true \
  -p:PublishSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -p:PublishTrimmed=false \
  -p:DebugType=none -p:GenerateDocumentationFile=false -o "$out"
# Completeness check: the executable and its bundled native library are for the requested architecture.
want=$([ "$rid" = linux-arm64 ] && echo aarch64 || echo x86-64)
file -b "$out/iotdsd" | grep -q "$want" || { echo "publish.sh: $out/iotdsd is not a $want executable" >&2; exit 1; }
echo "published $rid to $out: $(du -sh "$out/iotdsd" | cut -f1) ($(ls "$out" | tr '\n' ' '))"
