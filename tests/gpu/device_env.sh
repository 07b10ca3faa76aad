# Source this on a GPU machine that cannot reach a package index (the project's lent H100/H200 hosts):
# installs the carried Hydra wheels (.whl/, made by ../shared/tools/device-wheels.sh) and makes the repo
# importable under its package names without pip (kernels/ -> spmd_kernels, configs/ -> spmd_infer_configs).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p /tmp/pkgs
ln -sfn "$PWD/kernels" /tmp/pkgs/spmd_kernels
ln -sfn "$PWD/configs" /tmp/pkgs/spmd_infer_configs
export PYTHONPATH="/tmp/site:/tmp/pkgs:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# NVLink multicast stays off on shared hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
# Where a device call's results go (the tool fetches $OUT), and one part of a call under its own time
# limit, its output in $OUT/NAME.txt, so that one slow part cannot eat the whole call: part NAME LIMIT CMD...
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
part() { local name=$1 limit=$2; shift 2; echo "=== $name"; timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1; echo "rc=$?"; }
# pytest on the GPU as one part, its summary and failures printed: test_part NAME LIMIT [VAR=VALUE ...] PYTEST_ARG...
# (12 xdist workers share the card: compiling the Triton variants one after another is the slow half).
test_part() {
  local name=$1 limit=$2 envs=(); shift 2
  while (($#)) && [[ $1 == *=* && $1 != -* ]]; do envs+=("$1"); shift; done
  part "$name" "$limit" env "${envs[@]}" python3 -m pytest -q -n 12 "$@"
  tail -1 "$OUT/$name.txt"; grep -E "^(FAILED|ERROR)" "$OUT/$name.txt" | head -20
}
# The check against transformers (check_vs_transformers.py) as part "check", under LIMIT with these environment
# assignments, its verdict lines printed: check_part LIMIT [VAR=VALUE ...] CHECK_ARG...
check_part() {
  local limit=$1 envs=(); shift
  while (($#)) && [[ $1 == *=* && $1 != -* ]]; do envs+=("$1"); shift; done
  part check "$limit" env "${envs[@]}" python3 tests/gpu/check_vs_transformers.py "$@"
  grep -E "RESULT|OUTSIDE|Error" "$OUT/check.txt" | head -6
}
# Qwen3-0.6B on the nano-vllm protocol as one part (100 s), with these environment assignments and bench
# overrides, and its result line printed: nano_part NAME [VAR=VALUE ...] [-- BENCH_ARG ...]
nano_part() {
  local name=$1 envs=(); shift
  while (($#)) && [[ $1 != -- ]]; do envs+=("$1"); shift; done
  (($#)) && shift
  part "$name" 100 env "${envs[@]}" python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm \
    bench.output="$OUT/$name.json" "$@"
  echo "$name: ${envs[*]} $*"; grep -E "^nano_vllm|runs:|Error|compiled during" "$OUT/$name.txt" | cut -c1-150
}
# Where a nano-vllm run's time went, from its JSON ($OUT/NAME.json): wall, prefill steps / seconds / MFU, decode
# steps / median step / mean batch / MBU: nano_summary NAME
nano_summary() {
  python3 - "$OUT/$1.json" <<'PY'
import json, sys
case = json.load(open(sys.argv[1]))["cases"][0]
d, p = case.get("decode", {}), case.get("prefill", {})
print(f"  wall {case['wall_s']:.2f} s, steps {case['steps']}; prefill {p.get('steps')} steps {p.get('seconds', 0):.2f} s"
      f" MFU {p.get('mfu', 0):.1%}; decode {d.get('steps')} steps, median {d.get('median_step_s', 0) * 1e3:.2f} ms,"
      f" mean batch {d.get('batch_mean', 0):.0f}, MBU {d.get('mbu', 0):.1%}, {d.get('tok_s', 0):.0f} tok/s")
PY
}
# A bench JSON's first case ($OUT/NAME.json): its TTFT summary and its first 24 prefill steps' times (which step a
# slow TTFT spent its time in): ttft_steps NAME
ttft_steps() {
  python3 - "$OUT/$1.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cases"][0]
print("ttft", {k: round(v, 3) for k, v in c["ttft_s"].items()})
print("prefill step ms", [round(s * 1e3, 1) for s in c["prefill"]["step_s"][:24]])
PY
}
# A preset's decode at batch 256 and 64 (or BATCHES, e.g. BATCHES=1,8,64) from a 1024-token context (its TTFT: the
# prefill) as one part (limit LIMIT, default 100 s), with these environment assignments and bench overrides, and its
# result lines printed: decode_part NAME PRESET [VAR=VALUE ...] [-- BENCH_ARG ...]
decode_part() {
  local name=$1 preset=$2 envs=(); shift 2
  while (($#)) && [[ $1 != -- ]]; do envs+=("$1"); shift; done
  (($#)) && shift
  part "$name" "${LIMIT:-100}" env "${envs[@]}" python3 -m spmd_infer.bench bench.preset="$preset" \
    bench.workload=decode "bench.batch_sizes=[${BATCHES:-256,64}]" bench.context=1024 bench.output="$OUT/$name.json" \
    "$@"
  echo "--- $name: ${envs[*]} $*"; grep -E "^decode bs|Error" "$OUT/$name.txt" | cut -c1-110
}
# A copy of kernels/ and spmd_infer/ with a patch applied, for A/B runs of a change in one call: prints the
# PYTHONPATH under which `spmd_kernels` and `spmd_infer` are the patched copies:
# old=$(patched_kernels NAME tests/gpu/X.patch); env PYTHONPATH="$old" ...
patched_kernels() {
  local dir=/tmp/ab_$1 path
  rm -rf "$dir" && mkdir -p "$dir/src" "$dir/pkgs" && cp -r kernels spmd_infer "$dir/src/" \
    && (cd "$dir/src" && patch -s -p1 < "$OLDPWD/$2") && ln -sfn "$dir/src/kernels" "$dir/pkgs/spmd_kernels" \
    && ln -sfn "$PWD/configs" "$dir/pkgs/spmd_infer_configs" && path=${PYTHONPATH/\/tmp\/pkgs:/$dir/pkgs:} \
    && echo "${path/:$PWD/:$dir/src}"
}
# An A/B of an environment switch: parts NAME_1 and NAME_0 run CMD with VAR=1 and VAR=0, each under LIMIT, their
# decode lines printed: switch_parts NAME VAR LIMIT CMD...
switch_parts() {
  local name=$1 var=$2 limit=$3 value; shift 3
  for value in 1 0; do
    part "${name}_$value" "$limit" env "$var=$value" "$@"
    echo "--- $var=$value"; grep -E "^decode bs|Error" "$OUT/${name}_$value.txt" | cut -c1-110
  done
}
# A benchmark at tp2 once per TP all-reduce path (parallel.all_reduce=auto, then nccl), parts NAME_auto and
# NAME_nccl under LIMIT each, their result lines printed: all_reduce_parts NAME LIMIT BENCH_ARG...
all_reduce_parts() {
  local name=$1 limit=$2 mode; shift 2
  for mode in auto nccl; do
    part "${name}_$mode" "$limit" torchrun --nproc-per-node 2 -m spmd_infer.bench parallel.tp=2 \
      parallel.all_reduce=$mode bench.output="$OUT/${name}_$mode.json" "$@"
    echo "--- $name all_reduce=$mode"; grep -E "^decode bs|^grid|Error" "$OUT/${name}_$mode.txt" | cut -c1-120
  done
}
# An A/B of the tree against it with a patch applied, interleaved twice: parts NAME_new1, NAME_old1, NAME_new2 and
# NAME_old2 (the patched copy is "old"), each under LIMIT: ab_parts NAME PATCH LIMIT CMD...
ab_parts() {
  local name=$1 old limit=$3 run pp; old=$(patched_kernels "$name" "$2"); shift 3
  for run in new1 old1 new2 old2; do
    pp=$PYTHONPATH; [[ $run == old* ]] && pp=$old
    part "${name}_$run" "$limit" env PYTHONPATH="$pp" "$@"
  done
}
# A bench JSON's prefill per case ($OUT/NAME.json): steps, seconds, MFU, output rate and each run's prefill seconds:
# prefill_of NAME
prefill_of() {
  python3 - "$OUT/$1.json" "$1" <<'PY'
import json, sys
for case in json.load(open(sys.argv[1]))["cases"]:
    p = case.get("prefill", {})
    runs = " / ".join(f"{r['prefill_s']:.3f}" for r in case.get("runs", []))
    print(f"  {sys.argv[2]} {case['name']}: prefill {p.get('steps')} steps {p.get('seconds', 0):.3f} s, "
          f"MFU {p.get('mfu', 0):.1%}, out {case['output_tok_s']:.0f} tok/s; each run's prefill s {runs}")
PY
}
# A copy of spmd_infer/ with a patch applied, for A/B runs of an engine change in one call: prints the PYTHONPATH
# under which `spmd_infer` is the patched copy: old=$(patched_engine NAME tests/gpu/X.patch)
patched_engine() {
  local dir=/tmp/ab_engine_$1
  rm -rf "$dir" && mkdir -p "$dir" && cp -r spmd_infer "$dir/" && (cd "$dir" && patch -s -p1 < "$OLDPWD/$2") \
    && echo "$dir:$PYTHONPATH"
}
# DeepSeek-V2-Lite's TTFT (decode batch 256 from 1024-token prompts, two runs) as one part under PYTHONPATH PP, its
# prefill printed (each run's seconds): dsv2_ttft_part NAME PP
dsv2_ttft_part() {
  part "$1" 150 env PYTHONPATH="$2" python3 -m spmd_infer.bench bench.preset=deepseek-v2-lite bench.workload=decode \
    'bench.batch_sizes=[256]' bench.context=1024 bench.repeats=2 bench.output="$OUT/$1.json"
  prefill_of "$1"
}
