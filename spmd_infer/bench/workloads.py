"""The benchmark's workloads as cases (lists of prompt and output lengths) and their seeded random requests."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from ..data.request import Request
from ..parallel.dims import ConfigError
from ..sampling_params import SamplingParams

WORKLOADS = ("nano_vllm", "grid", "decode")


@dataclass
class Case:
    workload: str
    """nano_vllm, grid, decode, or warm (untimed)."""
    name: str
    input_lens: list[int]
    output_lens: list[int]
    uniform: bool = True
    """Every sequence has the same lengths (the hf baseline then runs it as one batch)."""

    @property
    def num_seqs(self) -> int:
        return len(self.input_lens)

    @property
    def prompt_tokens(self) -> int:
        return sum(self.input_lens)

    @property
    def output_tokens(self) -> int:
        return sum(self.output_lens)

    @property
    def max_len(self) -> int:
        return max(i + o for i, o in zip(self.input_lens, self.output_lens))


def build_cases(b: Any) -> list[Case]:
    """The cases of `b.workload` (a BenchSection); `all` runs the three workloads in turn."""
    names = WORKLOADS if b.workload == "all" else (b.workload,)
    if any(n not in WORKLOADS for n in names):
        raise ConfigError(f"bench.workload={b.workload!r} must be one of {', '.join(WORKLOADS)} or all")
    cases: list[Case] = []
    for name in names:
        cases.extend({"nano_vllm": _nano_vllm, "grid": _grid, "decode": _decode}[name](b))
    if any(min(c.input_lens + c.output_lens, default=0) < 1 for c in cases) or not all(c.num_seqs for c in cases):
        raise ConfigError("bench: every case needs at least one sequence and lengths >= 1 (check the batch sizes "
                          "and lengths in the bench section)")
    return cases


def warm_case() -> Case:
    """Small and untimed: compiles the prefill and decode kernels before the timed cases."""
    return Case("warm", "warm 4x32+8", [32] * 4, [8] * 4)


def _nano_vllm(b: Any) -> list[Case]:
    # nano-vllm's bench.py: lengths uniform in [100, 1024] for input and output, random token ids, ignore_eos.
    if not 1 <= b.min_len <= min(b.max_input_len, b.max_output_len):
        raise ConfigError(f"bench.min_len={b.min_len} must be in [1, min(bench.max_input_len, bench.max_output_len)]")
    rng = random.Random(b.seed)
    inputs = [rng.randint(b.min_len, b.max_input_len) for _ in range(b.num_seqs)]
    outputs = [rng.randint(b.min_len, b.max_output_len) for _ in range(b.num_seqs)]
    return [Case("nano_vllm", f"nano_vllm {b.num_seqs} seqs in/out {b.min_len}..{b.max_input_len}/{b.max_output_len}",
                 inputs, outputs, uniform=False)]


def _grid(b: Any) -> list[Case]:
    return [Case("grid", f"grid {n}x{i}+{o}", [i] * n, [o] * n)
            for n in b.grid_batch_sizes for i in b.input_lens for o in b.output_lens]


def _decode(b: Any) -> list[Case]:
    # The first token comes from the prefill, so decode_steps decode steps need decode_steps + 1 outputs.
    return [Case("decode", f"decode bs{n} @{b.context}", [b.context] * n, [b.decode_steps + 1] * n)
            for n in b.batch_sizes]


def make_requests(case: Case, vocab_size: int, seed: int, sampling: SamplingParams) -> list[Request]:
    """Random prompt tokens (identical on every rank: the queue must be); each runs exactly its output length."""
    rng = random.Random(f"{seed}/{case.name}")
    requests = []
    for i, (n_in, n_out) in enumerate(zip(case.input_lens, case.output_lens)):
        ids = [rng.randrange(vocab_size) for _ in range(n_in)]
        params = replace(sampling, max_tokens=n_out, min_tokens=0, ignore_eos=True, stop=(), stop_token_ids=(),
                         logprobs=0)
        requests.append(Request(index=i, id=i, prompt_token_ids=ids, sampling=params))
    return requests
