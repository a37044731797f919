#!/usr/bin/env bash
# Builds what travels to a GPU host that has CUDA 13 and cuDNN 9 but no .NET and no network:
#
#   bench/gpu/prepare.sh OUT
#
# OUT receives iotdsd-gpu.tar.xz.NNN (pieces of at most 60 MiB), MANIFEST.sha256 (every piece, then the whole
# archive) and run.sh. The archive holds bundle/iotdsd/: a self-contained linux-x64 publish of the CLI whose ONNX
# Runtime native libraries are those of Microsoft.ML.OnnxRuntime.Gpu.Linux 1.32.0 (libonnxruntime.so,
# libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so). Copy OUT to the GPU host and run
#   bash run.sh RESULTS_DIR
# there (docs/performance.md, "GPU run").
#
# IOTDSD_GPU_PAYLOAD=DIR packs DIR as bundle/iotdsd instead of publishing (a quick check of the packing itself);
# IOTDSD_GPU_PIECE_BYTES overrides the piece size (at most 62914560 = 60 MiB).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-}
[ -n "$out" ] || { echo "usage: bench/gpu/prepare.sh OUT" >&2; exit 2; }
limit=62914560
piece=${IOTDSD_GPU_PIECE_BYTES:-$limit}
case "$piece" in '' | *[!0-9]*) echo "prepare.sh: IOTDSD_GPU_PIECE_BYTES must be a byte count, got '$piece'" >&2; exit 2 ;; esac
[ "$piece" -ge 1 ] && [ "$piece" -le "$limit" ] || { echo "prepare.sh: IOTDSD_GPU_PIECE_BYTES must be 1..$limit, got $piece" >&2; exit 2; }
ort_version=1.32.0
mkdir -p "$out"
out=$(cd "$out" && pwd)
if compgen -G "$out/iotdsd-gpu.tar.xz.*" >/dev/null; then
  echo "prepare.sh: $out already holds pieces; give an empty folder" >&2
  exit 2
fi
work=$(mktemp -d /tmp/iotdsd-gpu-prepare.XXXXXX)
trap 'rm -rf "$work"' EXIT
bundle="$work/bundle/iotdsd"
mkdir -p "$bundle"

if [ -n "${IOTDSD_GPU_PAYLOAD:-}" ]; then
  [ -d "$IOTDSD_GPU_PAYLOAD" ] || { echo "prepare.sh: IOTDSD_GPU_PAYLOAD '$IOTDSD_GPU_PAYLOAD' is not a folder" >&2; exit 2; }
  cp -a "$IOTDSD_GPU_PAYLOAD/." "$bundle/"
else
  echo "prepare.sh: publishing a self-contained linux-x64 CLI ..." >&2
  dotnet publish "$repo/src/IotDsd.Cli" -c Release -r linux-x64 --self-contained true -p:PublishSingleFile=false \
    -o "$bundle" --nologo -v quiet >"$work/publish.log" 2>&1 || { tail -30 "$work/publish.log" >&2; exit 1; }
  # The GPU package, restored by a throw-away project outside the repository (the repository's own build stays CPU-only).
  echo "prepare.sh: restoring Microsoft.ML.OnnxRuntime.Gpu.Linux $ort_version ..." >&2
  mkdir -p "$work/ortgpu"
  cat >"$work/ortgpu/ortgpu.csproj" <<PROJ
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net10.0</TargetFramework><ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally></PropertyGroup>
  <ItemGroup><PackageReference Include="Microsoft.ML.OnnxRuntime.Gpu.Linux" Version="$ort_version" /></ItemGroup>
</Project>
PROJ
  (cd "$work/ortgpu" && dotnet restore --packages "$work/packages" --nologo -v quiet >"$work/restore.log" 2>&1) \
    || { tail -30 "$work/restore.log" >&2; exit 1; }
  native="$work/packages/microsoft.ml.onnxruntime.gpu.linux/$ort_version/runtimes/linux-x64/native"
  for lib in libonnxruntime.so libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    [ -f "$native/$lib" ] || { echo "prepare.sh: $lib is missing from the restored package ($native)" >&2; exit 1; }
    cp "$native/$lib" "$bundle/$lib"
  done
  echo "onnxruntime-gpu-linux $ort_version" >"$bundle/ONNXRUNTIME_GPU"
fi

echo "prepare.sh: compressing $(du -sh "$work/bundle" | cut -f1) ..." >&2
tar -C "$work" -cf - bundle | xz -3 -T0 >"$work/iotdsd-gpu.tar.xz"
split -b "$piece" -d -a 3 "$work/iotdsd-gpu.tar.xz" "$out/iotdsd-gpu.tar.xz."
(cd "$out" && sha256sum iotdsd-gpu.tar.xz.[0-9][0-9][0-9] >MANIFEST.sha256)
(cd "$work" && sha256sum iotdsd-gpu.tar.xz) >>"$out/MANIFEST.sha256"
cp "$repo/bench/gpu/run.sh" "$out/run.sh"
chmod +x "$out/run.sh"
count=$(ls "$out"/iotdsd-gpu.tar.xz.[0-9][0-9][0-9] | wc -l)
echo "prepare.sh: $count piece(s), $(du -ch "$out"/iotdsd-gpu.tar.xz.[0-9][0-9][0-9] | tail -1 | cut -f1) in all, in $out (copy the folder; run: bash run.sh RESULTS_DIR)" >&2
