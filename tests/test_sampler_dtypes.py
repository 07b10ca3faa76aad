"""The sampler takes logits in the model's dtype (no float32 copy per step) and draws the tokens it would draw from
a float32 copy of them, on every path: greedy, temperature, top-k/top-p/min-p, mixed rows."""

from __future__ import annotations

import pytest
import torch

from spmd_infer.layers.sampler import SamplingTensors, sample
from spmd_infer.sampling_params import SamplingParams

CASES = {
    "greedy": [SamplingParams(temperature=0.0)] * 4,
    "temperature": [SamplingParams(temperature=0.8, seed=1), SamplingParams(temperature=1.3, seed=2)] * 2,
    "mixed": [SamplingParams(temperature=0.0), SamplingParams(temperature=0.7, seed=3)] * 2,
    "top_k_top_p_min_p": [SamplingParams(temperature=0.9, top_k=20, seed=4), SamplingParams(temperature=1.0, top_p=0.8),
                          SamplingParams(temperature=1.1, min_p=0.05, seed=5), SamplingParams(temperature=0.0)],
}


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)  # CUDA: the fused Gumbel kernel reads the bf16 logits itself
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", list(CASES))
def test_model_dtype_logits_draw_what_float32_logits_draw(case, dtype, device):
    params = CASES[case]
    torch.manual_seed(0)
    # Few distinct values per row, so that bf16 rounding creates ties: the first maximum must win on both.
    logits = (torch.randn(len(params), 3000) * 4).round().to(dtype).to(device)
    for step in range(5):
        t = SamplingTensors.build(params, keys=list(range(len(params))), positions=[step] * len(params),
                                  device=logits.device)
        assert sample(logits, t).tolist() == sample(logits.float(), t).tolist()
