"""The device scripts under tests/gpu/ stay runnable: a device call is scarce, so a script that no longer parses,
names a file that is gone or sets a config key that no longer exists should fail here, not on the GPU machine."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest

from spmd_infer.bench.config import BenchConfig
from support.launch import REPO

SCRIPTS = sorted((REPO / "tests" / "gpu").glob("*.sh"))
# Overrides as the scripts write them: bench.preset=..., 'bench.batch_sizes=[64,1]', cache.dtype=$kv, ...
OVERRIDE = re.compile(r"(?<![\w.+/-])((?:bench|cache|model|parallel|runtime|scheduler|sampling|data)(?:\.\w+)+)=")
REPO_FILE = re.compile(r"\btests/(?:gpu|kernels)/\w+\.(?:py|sh)\b|\btests/test_\w+\.py\b")


def _config_keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        keys.add(prefix + f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys |= _config_keys(type(default), f"{prefix}{f.name}.")
    return keys


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) > 10 and (REPO / "tests" / "gpu" / "device_env.sh") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses_and_names_what_exists(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    missing = sorted({f for f in REPO_FILE.findall(text) if not (REPO / f).is_file()})
    assert not missing, f"{script.name} names files that are gone: {missing}"
    unknown = sorted(set(OVERRIDE.findall(text)) - _config_keys(BenchConfig))
    assert not unknown, f"{script.name} sets config keys that do not exist: {unknown}"
