#!/usr/bin/env bash
# The GPU run, on a host with an NVIDIA GPU, its driver, CUDA 13 and cuDNN 9 (system-wide or inside Python packages,
# site-packages/nvidia/*/lib), and no .NET and no network. In the folder prepare.sh wrote:
#
#   bash run.sh RESULTS_DIR
#
# 1. reassembles the pieces and checks every sha256 in MANIFEST.sha256, then unpacks the bundle into ./work;
# 2. finds libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libcudnn.so.9 and the driver's
#    libcuda.so.1, and puts their folders on LD_LIBRARY_PATH (refuses, exit 2, naming what is missing);
# 3. fails unless the CUDA provider really loaded: a pass of a tiny model on provider cuda, where ONNX Runtime may
#    not fall back to the CPU;
# 4. builds, on this host, the GPT-2-small-shape target (residual scale 2.0) and a Llama-shape target (llama-1b, or
#    llama-300m where llama-1b cannot be built in its step), distils an order-2 n-gram draft from each, and runs on CUDA (the
#    drafts on the CPU, --draft-provider cpu) `bench capacity`, IotDsd and server-only, at a 50 ms p99 time per output
#    token over session counts up to 512, then `bench models` (the pass-cost fit, and verification against the cached
#    context).
#
# Every step runs under `timeout` (at most 600 s, less when the whole run's budget, 840 s, runs short); a step that
# fails or times out is recorded in RESULTS_DIR/steps.jsonl and the run goes on with the next; the run exits 1 when
# any step failed. Results: one file per step in RESULTS_DIR (JSON where the command writes JSON), stderr beside it.
#
# IOTDSD_CUDA_SEARCH=DIR[:DIR...] searches only those folders (and their nvidia/*/lib, lib, lib64);
# IOTDSD_GPU_SESSIONS overrides the session counts, IOTDSD_GPU_BUDGET_S the whole run's budget in seconds,
# IOTDSD_GPU_LLAMA the Llama presets tried in turn (default "llama-1b llama-300m").
# IOTDSD_GPU_DRY_RUN=1 runs every step on the CPU provider with tiny sizes (tiny, llama-tiny, sessions 1,2), skipping
# the CUDA library search: a check of the script itself. IOTDSD_GPU_BUNDLE=DIR runs an unpacked bundle (or a build
# output, through `dotnet iotdsd.dll` where DIR has no iotdsd executable) instead of the pieces.
set -uo pipefail
start=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
results=${1:-}
[ -n "$results" ] || { echo "usage: bash run.sh RESULTS_DIR" >&2; exit 2; }
budget=${IOTDSD_GPU_BUDGET_S:-840}
dry=${IOTDSD_GPU_DRY_RUN:-0}
if [ "$dry" = 1 ]; then
  sessions=${IOTDSD_GPU_SESSIONS:-1,2} llamas=${IOTDSD_GPU_LLAMA:-llama-tiny} small_preset=tiny provider=cpu
else
  sessions=${IOTDSD_GPU_SESSIONS:-8,16,32,64,128,192,256,384,512} llamas=${IOTDSD_GPU_LLAMA:-llama-1b llama-300m} small_preset=small provider=cuda
fi
fail() { echo "run.sh: $1" >&2; exit "${2:-2}"; }
mkdir -p "$results" || fail "cannot create $results"
results=$(cd "$results" && pwd)

# 1. Reassemble and verify.
work="$here/work"
if [ -n "${IOTDSD_GPU_BUNDLE:-}" ]; then
  bundle=$(cd "$IOTDSD_GPU_BUNDLE" 2>/dev/null && pwd) || fail "IOTDSD_GPU_BUNDLE '$IOTDSD_GPU_BUNDLE' is not a folder"
  mkdir -p "$work" || fail "cannot create $work"
  echo "run.sh: running the bundle in $bundle" >&2
else
  manifest="$here/MANIFEST.sha256"
  [ -f "$manifest" ] || fail "no MANIFEST.sha256 beside run.sh (copy the whole folder prepare.sh wrote)"
  pieces=$(awk '$2 ~ /^iotdsd-gpu\.tar\.xz\.[0-9][0-9][0-9]$/ { print $2 }' "$manifest")
  [ -n "$pieces" ] || fail "MANIFEST.sha256 lists no pieces"
  for p in $pieces; do [ -f "$here/$p" ] || fail "piece $p is missing"; done
  (cd "$here" && grep -E ' iotdsd-gpu\.tar\.xz\.[0-9]{3}$' MANIFEST.sha256 | sha256sum --quiet -c -) >&2 \
    || fail "a piece does not match its sha256 in MANIFEST.sha256 (copy it again)"
  rm -rf "$work" && mkdir -p "$work" || fail "cannot create $work"
  (cd "$here" && cat $pieces) >"$work/iotdsd-gpu.tar.xz" || fail "cannot reassemble the pieces into $work"
  (cd "$work" && grep -E ' iotdsd-gpu\.tar\.xz$' "$manifest" | sha256sum --quiet -c -) >&2 \
    || fail "the reassembled archive does not match its sha256 (pieces out of order or incomplete)"
  xz -dc "$work/iotdsd-gpu.tar.xz" | tar -x -C "$work" || fail "cannot unpack the archive"
  rm -f "$work/iotdsd-gpu.tar.xz"
  bundle="$work/bundle/iotdsd"
  echo "run.sh: $(echo $pieces | wc -w) piece(s) verified and unpacked into $bundle" >&2
fi

# 2. The CUDA libraries (not in a dry run, which stays on the CPU).
found=()
if [ "$dry" != 1 ]; then
  roots=()
  if [ -n "${IOTDSD_CUDA_SEARCH:-}" ]; then
    IFS=: read -r -a roots <<<"$IOTDSD_CUDA_SEARCH"
  else
    IFS=: read -r -a roots <<<"${LD_LIBRARY_PATH:-}"
    roots+=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64
      /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64
      /usr/lib/wsl/lib /opt/conda/lib "${CONDA_PREFIX:-/nonexistent}/lib")
    for py in python3 python; do
      command -v "$py" >/dev/null 2>&1 || continue
      while IFS= read -r d; do roots+=("$d"); done < <("$py" -c 'import site
for d in site.getsitepackages() + [site.getusersitepackages()]: print(d)' 2>/dev/null)
    done
    roots+=(/usr/lib/python3*/site-packages /usr/lib/python3*/dist-packages /usr/local/lib/python3*/site-packages
      /usr/local/lib/python3*/dist-packages "$HOME"/.local/lib/python3*/site-packages /opt/conda/lib/python3*/site-packages
      "${VIRTUAL_ENV:-/nonexistent}"/lib/python3*/site-packages "${CONDA_PREFIX:-/nonexistent}"/lib/python3*/site-packages)
  fi
  dirs=()
  for r in "${roots[@]}"; do
    [ -n "$r" ] || continue
    for d in "$r" "$r"/nvidia/*/lib "$r"/nvidia/*/lib64 "$r"/lib "$r"/lib64; do [ -d "$d" ] && dirs+=("$d"); done
  done
  found=() missing=()
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9 libcuda.so.1; do
    hit=""
    for d in "${dirs[@]}"; do [ -e "$d/$lib" ] && { hit=$d; break; }; done
    if [ -z "$hit" ] && [ -z "${IOTDSD_CUDA_SEARCH:-}" ] && command -v ldconfig >/dev/null 2>&1; then
      hit=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l && /x86-64/ { sub(/\/[^\/]*$/, "", $NF); print $NF; exit }')
    fi
    if [ -n "$hit" ]; then found+=("$hit"); echo "run.sh: $lib in $hit" >&2; else missing+=("$lib"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    fail "no CUDA library found for: ${missing[*]} (searched ${#dirs[@]} folders: ${IOTDSD_CUDA_SEARCH:-LD_LIBRARY_PATH, /usr/local/cuda*, system folders, Python site-packages/nvidia/*/lib}). The CUDA provider of ONNX Runtime 1.32 needs CUDA 13 (cudart, cublas, cublasLt, curand), cuDNN 9 and the NVIDIA driver; install them (e.g. pip packages nvidia-cuda-runtime, nvidia-cublas, nvidia-curand, nvidia-cudnn-cu13) or name their folders in IOTDSD_CUDA_SEARCH=DIR[:DIR...]."
  fi
fi
ld=$(printf '%s\n' "${found[@]}" | awk '!seen[$0]++' | paste -sd:)
export LD_LIBRARY_PATH="$bundle:$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Targets on the provider (cuda; cpu in a dry run), drafts on the CPU: the n-gram draft's ONNX-ML LabelEncoder has no
# CUDA kernel. --provider-library applies to the CUDA models only.
export IOTDSD_EXECUTION_PROVIDER=$provider IOTDSD_DRAFT_PROVIDER=cpu IOTDSD_PROVIDER_LIBRARY="$bundle/libonnxruntime_providers_cuda.so"
export IOTDSD_MODEL_CACHE="$work/cache" DOTNET_CLI_TELEMETRY_OPTOUT=1
if [ -x "$bundle/iotdsd" ] && [ -f "$bundle/iotdsd" ]; then
  iotdsd=("$bundle/iotdsd")
elif [ -n "${IOTDSD_GPU_BUNDLE:-}" ] && [ -f "$bundle/iotdsd.dll" ] && command -v dotnet >/dev/null 2>&1; then
  iotdsd=(dotnet "$bundle/iotdsd.dll")
else
  fail "the bundle has no iotdsd executable"
fi
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$results/gpu.txt" 2>&1

# A step: `step NAME OUTFILE CAP_S COMMAND...` runs COMMAND under timeout (CAP_S, 600 and the budget left, whichever is least).
step() {
  local name=$1 outfile=$2 cap=$3; shift 3
  local left=$((budget - ($(date +%s) - start)))
  local t=$((left < cap ? left : cap)); t=$((t < 600 ? t : 600))
  if [ "$t" -lt 15 ]; then
    echo "{\"step\":\"$name\",\"skipped\":\"${left} s left of the ${budget} s budget\"}" >>"$results/steps.jsonl"
    echo "run.sh: $name skipped (${left} s left)" >&2
    return 1
  fi
  echo "run.sh: $name (at most ${t} s) ..." >&2
  local t0 rc; t0=$(date +%s)
  timeout "$t" "$@" >"$results/$outfile" 2>"$results/$outfile.stderr"; rc=$?
  echo "{\"step\":\"$name\",\"rc\":$rc,\"seconds\":$(($(date +%s) - t0)),\"timeout_s\":$t,\"output\":\"$outfile\"}" >>"$results/steps.jsonl"
  if [ "$rc" -ne 0 ]; then
    echo "run.sh: $name failed (exit $rc; 124 is the timeout); the end of its stderr:" >&2
    tail -5 "$results/$outfile.stderr" >&2
  fi
  return "$rc"
}
: >"$results/steps.jsonl"

failed=0
# 3. The provider must really load: provider cuda forbids ONNX Runtime's fall-back to the CPU.
models="$work/models"
step build-tiny build-tiny.txt 120 "${iotdsd[@]}" models build --kind transformer --role target --preset tiny --seed 1 --out "$models/tiny-target" \
  || fail "could not build the tiny check model (see $results/build-tiny.txt.stderr)" 1
step provider-check provider-check.jsonl 120 "${iotdsd[@]}" bench models --target "$models/tiny-target" --batches 1 --contexts 16 --iterations 3 --json \
  --provider "$provider" --provider-library "$IOTDSD_PROVIDER_LIBRARY" \
  || fail "the $provider provider did not load (see $results/provider-check.jsonl.stderr)" 1
grep -q "\"provider\":\"$provider\"" "$results/provider-check.jsonl" || fail "the check pass did not report provider $provider" 1
echo "run.sh: the $provider provider loaded and ran a pass; the KV pool was in $(grep -o '"kv":"[a-z-]*"' "$results/provider-check.jsonl" | head -1 | cut -d'"' -f4) memory" >&2
# The same greedy text with the target's KV pool in device memory as on the CPU (recorded in equality.json; float
# differences between providers could flip a near tie, so a difference is reported, not fatal).
eq=(generate --target "$models/tiny-target" --draft "$models/tiny-target" --prompt "Once upon a time" --temperature 0 --max-tokens 96 --json)
step generate-provider generate-provider.jsonl 60 "${iotdsd[@]}" "${eq[@]}" --target-provider "$provider" --draft-provider cpu || failed=1
step generate-cpu generate-cpu.jsonl 60 "${iotdsd[@]}" "${eq[@]}" --target-provider cpu --draft-provider cpu || failed=1
same=false; texts() { sed 's/,"tokens":[0-9].*//' "$1"; } # the text, not the timing
[ -s "$results/generate-cpu.jsonl" ] && [ "$(texts "$results/generate-provider.jsonl")" = "$(texts "$results/generate-cpu.jsonl")" ] && same=true
echo "{\"provider\":\"$provider\",\"greedy_text_identical_to_cpu\":$same}" >"$results/equality.json"
echo "run.sh: greedy text on $provider identical to the CPU's: $same" >&2

# 4. Build both targets on this host (weights do not travel), then distil a draft from each.
if [ "$dry" = 1 ]; then
  distill=(--order 2 --sequences 8 --tokens 16 --batch 8 --held-out 2 --temperature 0.8)
  capacity_size=(--max-tokens 8 --max-batch 8) iterations=2 batches=1,2 contexts=16,32 fit_batches=1,2
else
  distill=(--order 2 --sequences 64 --tokens 64 --batch 64 --held-out 16 --temperature 0.8)
  capacity_size=(--max-tokens 64 --max-batch 256) iterations=10 batches=1,4,16,64 contexts=64,512 fit_batches=1,4,16,64,256
fi
small="$models/small-target" small_draft="$models/small-draft"
step build-small build-small.txt 150 "${iotdsd[@]}" models build --kind transformer --role target --preset "$small_preset" --residual-scale 2.0 --seed 1 --out "$small" || failed=1
llama="" llama_draft="$models/llama-draft"
for preset in $llamas; do
  if step "build-$preset" "build-$preset.txt" 200 "${iotdsd[@]}" models build --role target --preset "$preset" --seed 1 --out "$models/$preset-target"; then
    llama=$preset
    break
  fi
done
[ -n "$llama" ] || failed=1 # a later preset standing in for an earlier one that cannot be built is no failure (run.json names it)
[ -d "$small" ] && { step distill-small distill-small.txt 120 "${iotdsd[@]}" models distill --target "$small" "${distill[@]}" --out "$small_draft" || failed=1; }
[ -n "$llama" ] && { step distill-llama distill-llama.txt 120 "${iotdsd[@]}" models distill --target "$models/$llama-target" "${distill[@]}" --out "$llama_draft" || failed=1; }

# 5. Capacity, server-only then IotDsd, for each target: one climb over the session counts, ended by the first miss.
capacity() { # NAME TARGET DRAFT
  local name=$1 target=$2 draft=$3
  local common=(bench capacity --target "$target" --prompt "The meaning of life is" --temperature 0.8 --gamma 4 --sessions "$sessions"
    --slo-ms 50 --past-slo 0 "${capacity_size[@]}" --json)
  step "capacity-$name-baseline" "capacity-$name-baseline.json" 100 "${iotdsd[@]}" "${common[@]}" --systems baseline || failed=1
  if [ -d "$draft" ]; then
    step "capacity-$name-iotdsd" "capacity-$name-iotdsd.json" 100 "${iotdsd[@]}" "${common[@]}" --systems iotdsd --draft "$draft" \
      --adaptive-gamma --adapt-in-sampling || failed=1
  fi
}
[ -d "$small" ] && capacity small "$small" "$small_draft"
[ -n "$llama" ] && capacity llama "$models/$llama-target" "$llama_draft"

# 6. Pass costs on the provider: the fit (decode, verification against γ and the batch) and verification against the
# cached context.
if [ -d "$small" ] && [ -d "$small_draft" ]; then
  step models-small models-small.txt 120 "${iotdsd[@]}" bench models --draft "$small_draft" --target "$small" --batches "$fit_batches" --iterations "$iterations" || failed=1
fi
[ -d "$small" ] && { step contexts-small contexts-small.jsonl 60 "${iotdsd[@]}" bench models --target "$small" --batches "$batches" --contexts "$contexts" --gamma 4 --iterations "$iterations" --json || failed=1; }
[ -n "$llama" ] && { step contexts-llama contexts-llama.jsonl 60 "${iotdsd[@]}" bench models --target "$models/$llama-target" --batches "$batches" --contexts "$contexts" --gamma 4 --iterations "$iterations" --json || failed=1; }
echo "{\"llama_preset\":\"${llama:-none}\",\"provider\":\"$provider\",\"dry_run\":$([ "$dry" = 1 ] && echo true || echo false),\"seconds\":$(($(date +%s) - start))}" >"$results/run.json"
echo "run.sh: done in $(($(date +%s) - start)) s; results in $results (steps.jsonl lists every step and its exit code)" >&2
exit "$failed"
