"""The peer in the same run: transformers `generate` (batched, left-padded, greedy) on the same prompts and lengths.

ignore_eos is matched by min_new_tokens = max_new_tokens. Each case first runs once untimed at its
largest shape (_warm_up). A case whose sequences share their lengths runs as one batch, twice: with one
new token (its time is the time to first token) and with all of them; the difference over the extra
tokens is the decode step time. nano-vllm's mixed lengths run in batches of bench.hf_batch_size, in the
workload's order or sorted by output length (ORDERS); each batch generates its longest output for every
row (what a generate() user gets), and only the requested tokens count in the rates.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import torch

from ..sampling_params import SamplingParams
from .workloads import Case, make_requests

log = logging.getLogger(__name__)

PAD = 0  # any id: padded positions are masked out
# How mixed-length prompts are batched: sorted by output length (each batch's rows finish together, so little
# of generate()'s work is thrown away) or in the order the workload gives them.
ORDERS = ("output_length", "given")


class HFBaseline:
    def __init__(self, hf_config: Any, device: torch.device, dtype: torch.dtype, batch_size: int,
                 cache_implementation: Optional[str] = None):
        from transformers import AutoModelForCausalLM

        with torch.device(device):
            self.model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype).eval()
        self.device = device
        self.batch_size = batch_size
        self.cache_implementation = cache_implementation
        self.vocab_size = hf_config.vocab_size
        self._generate([[1] * 16] * 2, 4)  # the first call pays for kernel selection and lazy initialisation
        self._warmed: dict[str, float] = {}  # case name -> seconds its untimed warm-up took

    def run(self, case: Case, seed: int, order: str = "output_length") -> dict:
        """The case through generate(); mixed lengths batched in this order (one of ORDERS)."""
        prompts = [r.prompt_token_ids for r in make_requests(case, self.vocab_size, seed, SamplingParams())]
        warmup = self._warm_up(case, prompts)
        if case.uniform:
            steps = case.output_lens[0]
            first = self._generate(prompts, 1)
            wall = self._generate(prompts, steps) if steps > 1 else first
            out = {"batch_size": len(prompts), "wall_s": wall, "ttft_s": first}
            if steps > 1:
                out["decode_step_s"] = (wall - first) / (steps - 1)
                out["decode_tok_s"] = len(prompts) / out["decode_step_s"]
        else:
            rows_in_order = list(range(case.num_seqs))
            if order == "output_length":
                rows_in_order.sort(key=lambda i: case.output_lens[i])
            wall = generated = 0
            for start in range(0, len(rows_in_order), self.batch_size):
                rows = rows_in_order[start:start + self.batch_size]
                n_new = max(case.output_lens[i] for i in rows)
                wall += self._generate([prompts[i] for i in rows], n_new)
                generated += n_new * len(rows)
                done = sum(case.output_lens[i] for i in rows_in_order[:start + len(rows)])
                # generate() runs minutes at batch 64: show the rate so far.
                log.info("transformers (%s order): %d of %d sequences, %.0f useful tok/s so far (%.1f s)",
                         order, start + len(rows), case.num_seqs, done / wall, wall)
            out = {"batch_size": self.batch_size, "order": order, "wall_s": wall, "generated_tokens": generated}
        out["warmup_s"] = warmup
        out["output_tok_s"] = case.output_tokens / out["wall_s"]
        out["total_tok_s"] = (case.prompt_tokens + case.output_tokens) / out["wall_s"]
        return out

    def _warm_up(self, case: Case, prompts: list[list[int]]) -> float:
        """One untimed generate() per case at its largest shape: the case's batch (mixed lengths: the
        hf_batch_size longest prompts) generating its longest output. Session 11 (H200) saw the first batch of 64
        of nano-vllm's protocol take 90 s and each later one 45 s: a one-time cost (the caching allocator growing
        with the KV cache, presumably) that the peer would not pay in a long job, so it is kept out of its rate."""
        if case.name not in self._warmed:
            if not case.uniform:
                longest = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))[-self.batch_size:]
                prompts = [prompts[i] for i in longest]
            self._warmed[case.name] = self._generate(prompts, max(case.output_lens))
            log.info("transformers warm-up for %s: %.1f s (untimed)", case.name, self._warmed[case.name])
        return self._warmed[case.name]

    @torch.inference_mode()
    def _generate(self, prompts: list[list[int]], n_new: int) -> float:
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):  # left padding: every row's last prompt token is in the last column
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        kwargs = {"cache_implementation": self.cache_implementation} if self.cache_implementation else {}
        ids, mask = ids.to(self.device), mask.to(self.device)
        _sync(self.device)
        started = time.perf_counter()
        out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=n_new,
                                  min_new_tokens=n_new, pad_token_id=PAD, **kwargs)
        _sync(self.device)
        seconds = time.perf_counter() - started
        if out.shape[1] != width + n_new:
            log.warning("transformers generated %d tokens instead of %d", out.shape[1] - width, n_new)
        return seconds

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def compare(engine: dict, hf: dict) -> dict:
    """Engine over transformers: > 1 means the engine is faster."""
    ratios = {"output_tok_s": engine["output_tok_s"] / hf["output_tok_s"]}
    if engine.get("ttft_s") and hf.get("ttft_s"):
        ratios["ttft"] = hf["ttft_s"] / engine["ttft_s"]["max"]  # the whole batch's first tokens, both sides
    if "decode" in engine and "decode_step_s" in hf:
        ratios["decode_step"] = hf["decode_step_s"] / engine["decode"]["median_step_s"]
    return ratios


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
