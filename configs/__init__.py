"""Hydra config groups, installed as the package `spmd_infer_configs` so a non-editable install finds them."""
