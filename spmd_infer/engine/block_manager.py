"""Paged KV-cache blocks: a free list, each sequence's block table, and hash-based prefix caching.

A full block is identified by its tokens and the identity of the block before it, so two requests
that share a prefix (a system prompt, few-shot examples) share its blocks. A freed block keeps its
contents and its place in the prefix index until it is handed out again, least recently freed first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from .sequence import Sequence


@dataclass
class _CachedBlock:
    key: tuple  # (parent block's key hash, tokens): exact, so a hash collision can never alias blocks
    hash: int


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = False):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.ref_count = [0] * num_blocks
        self.cached: dict[int, _CachedBlock] = {}  # block id -> what it holds (full blocks only)
        self.by_hash: dict[int, int] = {}  # key hash -> block id
        self.num_cached_tokens = 0  # prompt tokens served from the prefix cache (for the summary)

    @property
    def num_free(self) -> int:
        return len(self.free)

    def blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        """Extra blocks `seq` needs so that `num_tokens` tokens beyond its computed ones have slots."""
        total = -(-(seq.num_computed + num_tokens) // self.block_size)
        return max(0, total - len(seq.block_table))

    def can_allocate(self, seq: Sequence, num_tokens: int) -> bool:
        return self.blocks_needed(seq, num_tokens) <= self.num_free

    def allocate(self, seq: Sequence, num_tokens: int) -> None:
        for _ in range(self.blocks_needed(seq, num_tokens)):
            block, _ = self.free.popitem(last=False)
            self._forget(block)  # its old contents are about to be overwritten
            self.ref_count[block] = 1
            seq.block_table.append(block)

    def release(self, seq: Sequence) -> None:
        # Freed last-to-first, so a sequence's tail is reused before its (more shareable) head.
        for block in reversed(seq.block_table):
            self.ref_count[block] -= 1
            if self.ref_count[block] == 0:
                self.free[block] = None
        seq.block_table = []

    # ---- prefix caching -----------------------------------------------------------------------------
    def match_prefix(self, seq: Sequence) -> int:
        """Attach cached blocks for `seq`'s leading full blocks; returns the tokens now computed.

        The last token is never served from the cache: the step must run it to produce logits. Nor is any
        token of a sequence whose prompt log-probabilities are still to compute (they need the prompt's forward).
        """
        if not self.prefix_caching or seq.num_computed or seq.block_table or seq.needs_prompt_logprobs:
            return 0
        parent = 0
        for start in range(0, len(seq) - 1 - self.block_size + 1, self.block_size):
            key = (parent, tuple(seq.token_ids[start:start + self.block_size]))
            block = self.by_hash.get(hash(key))
            if block is None or self.cached[block].key != key:
                break
            if self.ref_count[block] == 0:
                del self.free[block]
            self.ref_count[block] += 1
            seq.block_table.append(block)
            parent = hash(key)
        seq.num_computed = len(seq.block_table) * self.block_size
        self.num_cached_tokens += seq.num_computed
        return seq.num_computed

    def unmatch(self, seq: Sequence) -> None:
        """Undo match_prefix for a sequence that could not be scheduled after all."""
        self.num_cached_tokens -= seq.num_computed
        self.release(seq)
        seq.num_computed = 0

    def register_full_blocks(self, seq: Sequence, known_tokens: Optional[int] = None) -> None:
        """Index each newly completed block of `seq`, so later requests can share it.

        `seq.block_hashes` remembers the chain so far (it depends on tokens only, so it survives preemption).
        `known_tokens`: only the first ones have their ids on the host (overlapped steps: the rest are
        placeholders until resolved).
        """
        hashes = seq.block_hashes
        full = min(seq.num_computed, len(seq.token_ids) if known_tokens is None else known_tokens) // self.block_size
        if not self.prefix_caching or full <= len(hashes):
            return  # prefix caching off, or no block completed since the last call
        for i in range(len(hashes), full):
            parent = hashes[i - 1] if i else 0
            key = (parent, tuple(seq.token_ids[i * self.block_size:(i + 1) * self.block_size]))
            entry = _CachedBlock(key, hash(key))
            hashes.append(entry.hash)
            block = seq.block_table[i]
            if entry.hash not in self.by_hash and block not in self.cached:
                self.cached[block] = entry
                self.by_hash[entry.hash] = block

    def _forget(self, block: int) -> None:
        entry: Optional[_CachedBlock] = self.cached.pop(block, None)
        if entry is not None and self.by_hash.get(entry.hash) == block:
            del self.by_hash[entry.hash]
