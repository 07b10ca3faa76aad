"""`python -m spmd_infer`: the same entry point as the `spmd-infer` console script."""

from .cli import main

main()
