"""The SPMD_* variables: the registry names exactly those the code reads, the README documents every kernel switch,
and startup logs the ones set and warns for a misspelt one."""

import logging
import re
from pathlib import Path

from spmd_infer.env_switches import KERNEL_SWITCHES, KNOWN, log_switches

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"""["'](SPMD_[A-Z0-9_]+)["']""")


def test_the_registry_names_every_variable_the_code_reads_and_no_other():
    sources = [p for d in ("kernels", "spmd_infer") for p in (REPO / d).rglob("*.py") if p.name != "env_switches.py"]
    read = {m for p in sources for m in NAME.findall(p.read_text())}
    assert read == set(KNOWN)


def test_the_readme_documents_every_kernel_switch():
    readme = (REPO / "README.md").read_text()
    assert [n for n in KERNEL_SWITCHES if f"`{n}`" not in readme] == []


def test_startup_logs_the_switches_set_and_warns_for_a_misspelt_one(caplog):
    log = logging.getLogger("test_env_switches")
    with caplog.at_level(logging.INFO, logger="test_env_switches"):
        log_switches(log, {"SPMD_FP8_ACT": "model", "SPMD_FP8_ACTS": "fp8", "PATH": "/bin"})
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert infos == ["SPMD_* environment: SPMD_FP8_ACT=model, SPMD_FP8_ACTS=fp8"]
    assert len(warnings) == 1 and "SPMD_FP8_ACTS is set" in warnings[0]
    assert "did you mean SPMD_FP8_ACT?" in warnings[0]


def test_nothing_is_logged_without_spmd_variables(caplog):
    log = logging.getLogger("test_env_switches")
    with caplog.at_level(logging.INFO, logger="test_env_switches"):
        log_switches(log, {"PATH": "/bin"})
    assert caplog.records == []
