#!/usr/bin/env bash
# One 1-GPU device call (~9 min, meant for an H100, after run_h100_session.sh; run_nano_profile.sh after it for where
# the decode step goes): the issue-4 nano-vllm target, Qwen3-0.6B under nano-vllm's protocol (256 sequences, input
# and output lengths uniform in 100..1024, ignore_eos) against transformers generate on the same prompts in the same
# run (bench.baseline=hf, batches of 64 as the issue measured it), in both prompt orders (bench.hf_orders): sorted by
# output length (the stronger peer, the headline ratio) and as given (what the 459 tok/s measured, as a
# generate() user feeds a file), each case after one untimed warm-up at its largest shape. On an H200 the sorted
# order ran at 831 tok/s (session 10, no warm-up), ~3 min; the given order at 635 (session 11, no warm-up: its first
# batch 90 s, each later one 45 s, 785 tok/s over them). Carry [".whl"].
set -uo pipefail
source tests/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# ORDERS=given (or output_length) times one order only, should both not fit one call's limit on a slower card.
part qwen_nano 585 python3 -m spmd_infer.bench bench.preset=qwen3-0.6b bench.workload=nano_vllm bench.baseline=hf \
  bench.hf_batch_size=64 "bench.hf_orders=[${ORDERS:-output_length,given}]" bench.output=$OUT/qwen_nano.json
# The rate so far after each batch of 64, kept should the part run out of time before the table.
grep -E "transformers (warm-up|\()|engine [0-9.]+x" "$OUT/qwen_nano.txt" | sed 's/.*\]\[INFO\] //' | cut -c1-160
grep -A13 "^model " "$OUT/qwen_nano.txt" | grep -v "^results"
rm -rf "$OUT"/*.run "$OUT"/*.json
