"""Resume: decide once, on global rank 0, which rows an earlier run of the same job already finished.

State on disk, beside the output: `<output>.shards/` (rows finished so far, data/writer.py) and
`<output>.run/manifest.json` (what produced them: a fingerprint of everything that changes a row's
text, the number of runs, and whether the output was published). Rank 0 reads both and broadcasts
one verdict over the world group, so ranks can never disagree about which rows are done.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
from omegaconf import OmegaConf

from .data.scan import scan_input
from .data.writer import done_rows, merge_shards, remove_stale_temps, shard_dir_for, shard_files
from .parallel.dims import ConfigError

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_LOCKS: dict[str, int] = {}  # output -> fd of its lock file, held by global rank 0


@dataclass
class ResumeState:
    num_rows: int
    run: int = 1
    """This run's number: its shards are run{run:03d}-dp*.jsonl."""
    done: bytearray = field(default_factory=bytearray)
    """done[i] == 1: row i is in a shard already and is not run again."""
    complete: bool = False
    """The output is published and matches the manifest: nothing to do."""

    @property
    def num_done(self) -> int:
        return self.num_rows if self.complete else self.done.count(1)

    def is_done(self, index: int) -> bool:
        return bool(self.done[index])


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + ".run") / "manifest.json"


def decide(cfg: Any, plan: Any, dims: Any, data_format: str) -> ResumeState:
    """The same ResumeState on every rank, or the same ConfigError on every rank."""
    verdict: list[Any] = [None]
    if dist.get_rank(dims.world_group) == 0:
        try:
            verdict[0] = _decide_here(cfg, plan, data_format)
        except ConfigError as e:
            verdict[0] = e
    if dims.world_size > 1:
        # Sent as one pickled object: for 10^7 rows the done map is 10 MB, sent once.
        dist.broadcast_object_list(verdict, group_src=0, group=dims.world_group,
                                   device=plan.device if plan.device.type == "cuda" else None)
    if isinstance(verdict[0], ConfigError):
        raise ConfigError(str(verdict[0]))
    return verdict[0]


def _float8_weights(plan: Any, activations: str, activations_fit: bool) -> str:
    """How float8 weights compute, for the fingerprint: "fp8" where float8 activations meet them (on CUDA, with the
    kernel's `activations` kind (SPMD_FP8_ACT) "fp8" and blocks that take them: `activations_fit`), else with
    activations in the model's dtype (the CPU path computes the dequantized model)."""
    fp8_activations = plan.device.type == "cuda" and activations == "fp8" and activations_fit
    return "fp8" if fp8_activations else "fp8, activations in model.dtype"


def fingerprint(cfg: Any, plan: Any, data_format: str) -> dict[str, Any]:
    """Everything that changes what a row's output is; the layout and scheduler settings do not."""
    model = plan.model_dir
    fp: dict[str, Any] = {"model.path": str(model.resolve())}
    for name in ("config.json", "generation_config.json"):
        if (model / name).is_file():
            fp[f"model {name} sha256"] = hashlib.sha256((model / name).read_bytes()).hexdigest()
    fp["model weights (name: bytes)"] = {p.name: p.stat().st_size for p in sorted(model.glob("*.safetensors"))}
    fp["model.tokenizer"] = cfg.model.tokenizer
    fp["model.dtype"] = str(plan.dtype).replace("torch.", "")
    if plan.fp8_expert_block is not None:  # (absent otherwise: manifests written before the setting still match)
        # As resolved (auto keeps a float8 checkpoint's experts float8 on a GPU), with what meets them: float8
        # activations on CUDA unless SPMD_FP8_ACT says otherwise or the held blocks cannot take them
        # (fused_moe.fp8_activations_fit).
        from spmd_kernels.fused_moe import DEFAULT_ACTIVATIONS, fp8_activations_fit

        from .job_plan import resident_expert_block

        moe = OmegaConf.select(cfg, "parallel.moe", default="ep")
        held = resident_expert_block(plan.hf_config, plan.fp8_expert_block, plan.dims.mlp_ranks, moe)
        fp["model.expert_dtype"] = _float8_weights(plan, DEFAULT_ACTIVATIONS, fp8_activations_fit(held))
    if plan.fp8_linear_block is not None:  # (absent otherwise, as for the experts)
        # As resolved, with what meets them (LinearBase.project): float8 activations on CUDA unless SPMD_FP8_ACT
        # says otherwise or the blocks are too narrow (fp8_linear.takes_fp8_activations).
        from spmd_kernels.fp8_linear import DEFAULT_ACTIVATIONS as linear_activations
        from spmd_kernels.fp8_linear import takes_fp8_activations

        fp["model.linear_dtype"] = _float8_weights(plan, linear_activations,
                                                   takes_fp8_activations(plan.fp8_linear_block))
    if OmegaConf.select(cfg, "cache.dtype", default="auto") == "fp8":  # (absent for the model's dtype, as before)
        fp["cache.dtype"] = "fp8"  # keys and values rounded to float8: other tokens than a bf16 cache's
    fp["model.max_model_len"] = plan.max_model_len
    sampling = OmegaConf.to_container(cfg.sampling, resolve=True) if OmegaConf.is_config(cfg.sampling) \
        else dict(cfg.sampling)
    fp.update({f"sampling.{k}": v for k, v in sorted(sampling.items())})
    stat = plan.input.stat()
    fp["data.input"] = str(plan.input.resolve())
    fp["data.input bytes"] = stat.st_size
    fp["data.input mtime_ns"] = stat.st_mtime_ns
    fp["data.format"] = data_format
    return json.loads(json.dumps(fp))  # as it reads back from the manifest (tuples become lists)


def _decide_here(cfg: Any, plan: Any, data_format: str) -> ResumeState:
    _lock(plan.output)
    try:
        return _decide_locked(cfg, plan, data_format)
    except BaseException:
        release(plan.output)
        raise


def _decide_locked(cfg: Any, plan: Any, data_format: str) -> ResumeState:
    output, shards, mpath = plan.output, shard_dir_for(plan.output), manifest_path(plan.output)
    scan = scan_input(str(plan.input), data_format)  # before anything is written
    if scan.duplicates:
        raise ConfigError(scan.duplicates_message(str(plan.input)))
    fp = fingerprint(cfg, plan, data_format)
    remove_stale_temps(output)
    if cfg.data.overwrite:
        if shards.exists() or output.exists():
            log.info("data.overwrite=true: starting afresh; %s is replaced when this run finishes", output)
        shutil.rmtree(shards, ignore_errors=True)
        return _start(mpath, fp, scan.num_rows, runs=1)
    manifest = _read_manifest(mpath)
    if manifest is None:
        found = output if output.exists() else shards if shard_files(shards) else None
        if found is not None:
            raise ConfigError(
                f"{found} already exists but {mpath} (which records the configuration that wrote it) does not, so "
                f"its rows cannot be resumed safely; set data.overwrite=true to replace it, or choose another "
                f"data.output")
        return _start(mpath, fp, scan.num_rows, runs=1)
    changed = [f"{k}: {manifest['fingerprint'].get(k)!r} -> {v!r}" for k, v in fp.items()
               if manifest["fingerprint"].get(k) != v]
    changed += [f"{k}: {v!r} -> (unset)" for k, v in manifest["fingerprint"].items() if k not in fp]
    if changed:
        raise ConfigError(
            f"data.output={str(output)!r} holds rows of a run with a different configuration (changed: "
            f"{'; '.join(changed)}); continuing would mix their results. Set data.overwrite=true to start afresh, "
            f"rerun with the earlier settings to finish that run, or choose another data.output")
    if manifest.get("complete"):
        if output.is_file() and output.stat().st_size == manifest.get("output_bytes"):
            shutil.rmtree(shards, ignore_errors=True)  # left by a run killed just after it published
            return ResumeState(num_rows=scan.num_rows, run=manifest["runs"], complete=True)
        log.warning("%s was changed or removed since the run that wrote it finished; running the job again", output)
        shutil.rmtree(shards, ignore_errors=True)
        return _start(mpath, fp, scan.num_rows, runs=manifest["runs"] + 1)
    try:
        done = done_rows(shards, scan.num_rows)
    except ValueError as e:
        raise ConfigError(f"{e}: the shards in {shards} do not belong to this input; set data.overwrite=true "
                          f"to start afresh") from None
    state = _start(mpath, fp, scan.num_rows, runs=manifest["runs"] + 1, done=done)
    log.info("resuming: %d of %d rows were finished by earlier runs (%s); running the other %d",
             state.num_done, scan.num_rows, shards, scan.num_rows - state.num_done)
    return state


def _start(mpath: Path, fp: dict[str, Any], num_rows: int, runs: int, done: bytearray | None = None) -> ResumeState:
    # Written before any shard of this run exists, so shards never outlive the record of what made them.
    _write_manifest(mpath, {"version": MANIFEST_VERSION, "fingerprint": fp, "rows": num_rows, "runs": runs,
                            "complete": False, "output_bytes": None})
    return ResumeState(num_rows=num_rows, run=runs, done=done if done is not None else bytearray(num_rows))


def publish(plan: Any, state: ResumeState) -> None:
    """Rank 0, after every shard is closed: merge, publish atomically, mark complete, drop the shards."""
    shards, mpath = shard_dir_for(plan.output), manifest_path(plan.output)
    merge_shards(shards, plan.output, state.num_rows)
    manifest = _read_manifest(mpath)
    manifest.update(complete=True, output_bytes=plan.output.stat().st_size)
    _write_manifest(mpath, manifest)
    # A kill before this line leaves shards beside a complete manifest: the next run finds the output
    # complete and removes them.
    shutil.rmtree(shards, ignore_errors=True)


def _lock(output: Path) -> None:
    """Rank 0 holds an exclusive lock on the output's state for the whole job: two jobs on one output
    (a rerun started while the first still runs, or workers orphaned by a killed torchrun) would write
    the same rows twice. The OS drops the lock when the process ends, however it ends."""
    path = manifest_path(output).with_name("lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"another job is writing data.output={str(output)!r} now ({holder}, holding {path}); wait "
                          f"for it to end or stop it, or choose another data.output") from None
    except OSError as e:  # a file system without locks (some parallel file systems): run unguarded
        log.warning("cannot lock %s (%s); make sure no other job writes %s at the same time", path, e, output)
        os.close(fd)
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode())
    _LOCKS[str(output)] = fd


def release(output: Path) -> None:
    """Give up the output's lock (at the end of a job; a no-op on ranks other than 0)."""
    fd = _LOCKS.pop(str(output), None)
    if fd is not None:
        os.close(fd)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); set data.overwrite=true to start afresh") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise ConfigError(f"{path} was written by another version of spmd-infer; set data.overwrite=true "
                          f"to start afresh")
    return manifest


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
