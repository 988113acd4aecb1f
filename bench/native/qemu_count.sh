#!/usr/bin/env bash
# Instructions executed by the aarch64 native benchmark under qemu-aarch64, per training step, for
# the portable and the NEON kernel paths: one translation block per instruction (-singlestep),
# each execution logged (-d exec,nochain), counted for 1 and for 3 steps; the difference over 2
# steps leaves out start-up and network construction. Slow (about a million instructions a
# second): a few minutes per model.
#   bench/native/qemu_count.sh BUILD_DIR [MODEL...]   (BUILD_DIR from .ci/native: build/aarch64)
set -euo pipefail
build=${1:?usage: qemu_count.sh BUILD_DIR [MODEL...]}
shift
models=("${@:-seed lenet}")
count() {  # count PATH MODEL STEPS
  CNNBP_CPU_CAPABILITY=$1 CNNBP_BENCH_PEAK_ITERS=0 qemu-aarch64 -L /usr/aarch64-linux-gnu -singlestep \
    -d exec,nochain -D /dev/stdout "$build/cnnbp_bench" 1 --once --model "$2" --batch 8 --steps "$3" | grep -c "^Trace"
}
printf "%-8s %-9s %16s\n" model path "instr/step"
for m in ${models[@]}; do
  for path in baseline neon; do
    a=$(count $path "$m" 1)
    b=$(count $path "$m" 3)
    printf "%-8s %-9s %16d\n" "$m" "$path" $(( (b - a) / 2 ))
  done
done
