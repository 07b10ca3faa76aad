"""DPMeta exchange bookkeeping without processes: the wait for slower DP ranks is split from the collective."""

from __future__ import annotations

import time

import pytest
import torch

from spmd_infer.parallel import dp_meta
from spmd_infer.parallel.dp_meta import DPMetaExchange, Field, make_row


def test_wait_for_the_slowest_rank_is_taken_from_its_reported_work(monkeypatch):
    exchange = DPMetaExchange(group=None, dp=2, dp_rank=0, device=torch.device("cpu"))
    other_work_us = [0]

    def fake_all_gather(recv, send, group):
        # The other DP rank worked longer and arrives later: its row says how long.
        other = send.clone()
        other[Field.WORK_US] = other_work_us[0]
        time.sleep(0.02)
        recv.copy_(torch.cat([send, other]))

    monkeypatch.setattr(dp_meta.dist, "all_gather_into_tensor", fake_all_gather)
    first = exchange.gather(make_row(num_tokens=1))
    assert first.column(Field.WORK_US)[0] == 0 and first.wait_seconds == 0  # no previous step yet
    time.sleep(0.01)  # this rank's work: ~10 ms
    other_work_us[0] = 25_000  # the other rank's: 25 ms, so we wait ~15 ms (capped by the exchange time)
    meta = exchange.gather(make_row(num_tokens=1))
    own = meta.column(Field.WORK_US)[0] / 1e6
    assert 0.009 < own < 0.02
    assert meta.wait_seconds == pytest.approx(min(meta.exchange_seconds, 0.025 - own))
    other_work_us[0] = 1  # a faster peer: no wait on our side
    assert exchange.gather(make_row(num_tokens=1)).wait_seconds == 0


def test_single_dp_rank_never_waits():
    exchange = DPMetaExchange(group=None, dp=1, dp_rank=0, device=torch.device("cpu"))
    for _ in range(3):
        meta = exchange.gather(make_row(num_tokens=4))
        assert meta.wait_seconds == 0 and meta.get(Field.NUM_TOKENS) == 4
