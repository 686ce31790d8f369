#!/usr/bin/env bash
# Time and peak RSS of each issue-12 method through the CLI (`/usr/bin/time -v`), on one model pair.
# usage: bench/methods/cli-times.sh <label> <base> <ft> <corpus> <samples> <tokens-per-sample> [extra CLI options…]
# Writes bench/results/methods-<label>/<method>.{json,time} and prints one TSV line per method:
# label, method, wall seconds, CPU seconds (user + system), peak RSS (MB), exit status, the 1-minute
# load average at the start. METHODS="kl mine …" runs only those (default: all, in the order below).
set -u
label=$1 base=$2 ft=$3 corpus=$4 samples=$5 tokens=$6
shift 6
extra=("$@")
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/bench/results/methods-$label
mkdir -p "$out"
cli=(node "$root/bin/neurodiff.mjs")
corpusOpts=(--corpus "$corpus" --max-samples "$samples" --tokens-per-sample "$tokens")
prompt="Once upon a time, a little girl went to the"
alphas=${ALPHAS:-0,1,2}
ampSamples=${AMP_SAMPLES:-2}

run() {
  local name=$1
  shift
  if [ -n "${METHODS:-}" ] && [[ " $METHODS " != *" $name "* ]]; then return; fi
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -v -o "$out/$name.time" "$@" >"$out/$name.json" 2>"$out/$name.err"
  local rc=$?
  local wall cpu rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$out/$name.time")
  cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {s+=$2} END {printf "%.1f", s}' "$out/$name.time")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$out/$name.time")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$name" "$wall" "$cpu" "$rss" "$rc" "$load"
}

run adl "${cli[@]}" adl "$base" "$ft" "${corpusOpts[@]}" --no-patchscope --json "${extra[@]}"
run mine "${cli[@]}" mine "$base" "$ft" "${corpusOpts[@]}" --json "${extra[@]}"
run kl "${cli[@]}" kl "$base" "$ft" "${corpusOpts[@]}" --json "${extra[@]}"
run pca "${cli[@]}" pca "$base" "$ft" "${corpusOpts[@]}" --json "${extra[@]}"
run diff-sae-train "${cli[@]}" diff-sae train "$base" "$ft" --corpus "$corpus" --max-samples "$samples" --tokens-per-sample "$tokens" \
  --dict 256 --k 8 --steps 300 --batch 128 --lr 4e-3 --no-cache --out "$out/diff-sae.safetensors" --json "${extra[@]}"
run diff-sae-latents "${cli[@]}" diff-sae latents "$out/diff-sae.safetensors" "$base" "$ft" --corpus "$corpus" --top 50 --no-cache --json "${extra[@]}"
run amplify-logits "${cli[@]}" amplify "$base" "$ft" --prompt "$prompt" --alpha "$alphas" --mode logits --generate 32 --samples "$ampSamples" --seed 0 --json "${extra[@]}"
run amplify-weights "${cli[@]}" amplify "$base" "$ft" --prompt "$prompt" --alpha 2 --mode weights --generate 32 --samples "$ampSamples" --seed 0 --json "${extra[@]}"
run attention "${cli[@]}" attention "$base" "$ft" --prompt "$prompt" --corpus "$corpus" --max-samples "$samples" --tokens-per-sample "$tokens" --json "${extra[@]}"
run attention-no-patching "${cli[@]}" attention "$base" "$ft" --prompt "$prompt" --corpus "$corpus" --max-samples "$samples" --tokens-per-sample "$tokens" --no-patching --json "${extra[@]}"
