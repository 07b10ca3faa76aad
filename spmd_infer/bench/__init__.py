"""The benchmark (`python -m spmd_infer.bench`): random-weight presets, workloads, MBU/MFU against measured ceilings."""
