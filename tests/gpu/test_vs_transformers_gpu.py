"""GPU only: bf16 engine outputs agree with transformers by the top-k logprob rule (skips without CUDA)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SCRIPT = Path(__file__).with_name("check_vs_transformers.py")


@pytest.mark.gpu
def test_tiny_model_one_gpu(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--layouts", "1x1",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "0 failed" in proc.stdout
