#!/usr/bin/env bash
# The GPU checks as one prepared command for a lent GPU (about 6 minutes on one H100; each case stops at 150 s):
# both recipes' students under ZeRO-2 and ZeRO-3 (2 validation rounds each: a stall shows), bf16, the liger
# path; validation seconds, training tokens per second and peak GPU memory per case, as a table in
# $OUT/gpu_check.md (default outputs/gpu_check/). Extra arguments go to benchmarks/gpu_check.py.
#   bash benchmarks/gpu_check.sh [--only "causal, ZeRO-3"] [--timeout 150]
# On a machine without codistill's dependencies (and without a network) put their wheels in .wheels/ first
# (`pip download -d .wheels ".[deepspeed,liger]"` on a machine with the same Python): installed from there.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import codistill, deepspeed, liger_kernel" 2>/dev/null; then
  if [ -d .wheels ]; then
    pip install -q --no-index --find-links .wheels -e ".[deepspeed,liger]"
  else
    pip install -q -e ".[deepspeed,liger]"
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c 'import torch, transformers, pytorch_lightning as pl, deepspeed
print(f"torch {torch.__version__}, transformers {transformers.__version__}, lightning {pl.__version__}, deepspeed {deepspeed.__version__}")'
export WANDB_MODE=offline HF_HUB_OFFLINE=1
python benchmarks/gpu_check.py --out "${OUT:-outputs/gpu_check}" "$@"
