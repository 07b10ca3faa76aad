#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what the GPU machines lack and cannot download: the Hydra wheels
# (../shared/tools/device-wheels.sh) and pytest-xdist with execnet, so that the bf16 kernel suite compiles its
# Triton variants on several cores at once (run_kernel_suite.sh). Run in the project root; then carry [".whl"].
set -euo pipefail
../shared/tools/device-wheels.sh
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl pytest-xdist==3.8.0 execnet==2.1.2
ls -1 .whl
