#!/usr/bin/env bash
# One node: torchrun starts NGPU ranks of spmd-infer; every argument is passed on as a Hydra override.
#
#   NGPU=4 launch/run.sh model.path=/ckpt/Llama-3.1-8B-Instruct parallel.dp=2 parallel.tp=2 \
#       data.input=prompts.jsonl data.output=out.jsonl sampling.temperature=0
#
# Environment (defaults in brackets): NGPU [8] ranks; LOG_RANK [unset] local ranks whose console
# torchrun shows (e.g. 0, or 0,1); PYTHON [python3]. Any NCCL_* or TORCH_* variable you export is kept.
set -euo pipefail

NGPU=${NGPU:-8}
PYTHON=${PYTHON:-python3}

# NVLink SHARP (NVLS) multicast objects and torch's symmetric-memory multicast fail on some
# drivers/containers and gain nothing for our small per-step collectives; opt back in by exporting 1 / 0.
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
export TORCH_SYMM_MEM_DISABLE_MULTICAST=${TORCH_SYMM_MEM_DISABLE_MULTICAST:-1}
# One CPU thread per rank for host-side work; NGPU ranks each spawning a thread per core only contend.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# spmd-infer already prints INFO on global rank 0 only (others print errors), so the console stays
# one rank's and rank 0 keeps a real terminal for its progress bar. LOG_RANK=0 also hides other
# ranks' stray library output, through torchrun's filter (rank 0's progress then comes as plain lines).
filter=()
if [[ -n "${LOG_RANK:-}" ]]; then
    filter=(--local-ranks-filter "$LOG_RANK" --role rank --tee 3)
fi

exec "$PYTHON" -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node "$NGPU" "${filter[@]}" \
    -m spmd_infer "$@"
