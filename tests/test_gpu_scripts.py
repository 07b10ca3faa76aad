"""The device scripts under tests/gpu/ stay runnable: a device call is scarce, so a script that no longer parses,
names a file that is gone or sets a config key that no longer exists should fail here, not on the GPU machine."""

from __future__ import annotations

import dataclasses
import functools
import re
import subprocess

import pytest

from spmd_infer.bench.config import BenchConfig
from support.launch import REPO

SCRIPTS = sorted((REPO / "tests" / "gpu").glob("*.sh"))
PATCHES = sorted((REPO / "tests" / "gpu").glob("*.patch"))
# Overrides as the scripts write them: bench.preset=..., 'bench.batch_sizes=[64,1]', cache.dtype=$kv, ...
OVERRIDE = re.compile(r"(?<![\w.+/-])((?:bench|cache|model|parallel|runtime|scheduler|sampling|data)(?:\.\w+)+)=")
REPO_FILE = re.compile(r"\btests/(?:gpu|kernels)/\w+\.(?:py|sh)\b|\btests/test_\w+\.py\b")
SWITCH = re.compile(r"\bSPMD_[A-Z0-9_]+\b")
# Where the switches a script may set are read: the engine, the kernels, and the test hooks (SPMD_TEST_*).
SWITCH_READERS = ("spmd_infer", "kernels", "tests")
THIS_FILE = __file__.rsplit("/", 1)[-1]  # its made-up switch is no reader's
TEST_FILE = re.compile(r"\btests/(kernels/)?test_\w+\.py\b")


def _config_keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        keys.add(prefix + f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys |= _config_keys(type(default), f"{prefix}{f.name}.")
    return keys


@functools.cache
def _switches_read() -> frozenset[str]:
    """Every SPMD_* name the Python sources mention (the device scripts themselves are shell, not counted)."""
    return frozenset(name for folder in SWITCH_READERS for path in (REPO / folder).rglob("*.py")
                     if path.name != THIS_FILE for name in SWITCH.findall(path.read_text()))


def _unread_switches(text: str) -> list[str]:
    """The SPMD_* names in a script that no source reads; a prefix of read ones (`grep SPMD_DECODE`) is fine."""
    read = _switches_read()
    return sorted({name.rstrip("_") for name in SWITCH.findall(text)
                   if not any(r == name.rstrip("_") or r.startswith(name.rstrip("_") + "_") for r in read)})


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
    gone = _unread_switches(text)
    assert not gone, (f"{script.name} names SPMD_* switches no code reads (an A/B would time the same code twice): "
                      f"{gone}; delete the script and name the commit it runs at in tests/gpu/README.md")


def _kernel_files_split(text: str) -> list[str]:
    """Commands (backslash-continued lines joined) naming tests/kernels/ files on both sides of a top-level test
    file: on the device's pytest with xdist (session 35) the kernel files after such a file lost
    tests/kernels/conftest.py's fixtures (52 setup errors: 'fixture dtype not found'), so name them together."""
    split = []
    for command in text.replace("\\\n", " ").splitlines():
        kinds = "".join("k" if m.group(1) else "t" for m in TEST_FILE.finditer(command))
        if re.search("kt+k", kinds):
            split.append(command.strip()[:80])
    return split


def test_kernel_test_files_are_named_together():
    split = {script.name: cmds for script in SCRIPTS if (cmds := _kernel_files_split(script.read_text()))}
    assert not split, f"name tests/kernels/ files next to each other in: {split}"
    assert _kernel_files_split("test_part x 9 tests/kernels/test_a.py \\\n  tests/test_b.py tests/kernels/test_c.py")


def test_a_switch_that_no_code_reads_is_caught():
    script = ("export SPMD_PDL=0 SPMD_NO_SUCH_SWITCH=1\n"
              "env | grep SPMD_DECODE_\n"
              "switch_parts x SPMD_FP8_WIDE_TILES 80 cmd\n")
    assert _unread_switches(script) == ["SPMD_NO_SUCH_SWITCH"]


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_ab_patch_applies_to_todays_code(patch):
    """ab_parts / patched_kernels / patched_engine (device_env.sh) time today's code against a patched copy: a patch
    that no longer applies would stop the call on the GPU machine."""
    proc = subprocess.run(["git", "apply", "--check", str(patch)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"{patch.name} no longer applies: {proc.stderr.strip()}; remake it or delete it"
