"""Which dtype matrix work runs in: bf16 autocast where the hardware multiplies bf16 natively, fp32 elsewhere.

bf16 autocast keeps the weights, the optimizer and every reduction in fp32 (losses and log-softmaxes are
autocast's fp32 ops) and runs the matmuls in bf16. On a GPU with bf16 and on a CPU with AVX-512 BF16 or AMX
that is about 1.5x to 2.5x faster per step; on a CPU without them bf16 is emulated and slower, so `auto` picks
fp32 there. The decision is a pure function of the device and the CPU's flags (`decide`), tested without the
hardware.
"""

import contextlib
from functools import cache
from pathlib import Path

import torch

from codistill.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # /proc/cpuinfo's names for native bf16 matrix instructions


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo; none elsewhere, which means fp32)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def decide(precision: str, device_type: str, cuda_bf16: bool, flags: frozenset[str]) -> torch.dtype | None:
    """The autocast dtype for `precision` on a device of `device_type` (None: plain fp32)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    native = cuda_bf16 if device_type == "cuda" else device_type == "cpu" and bool(CPU_BF16_FLAGS & flags)
    if precision == "bf16" or native:
        return torch.bfloat16
    return None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`decide` for this machine."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return decide(precision, device.type, cuda_bf16, cpu_flags())


def device_of(accelerator: str) -> torch.device:
    """The device a Lightning `accelerator` setting trains on (auto: a GPU where there is one)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("mps" if accelerator == "mps" else "cpu")


def lightning_precision(precision: str, accelerator: str) -> str:
    """`trainer.precision` for `precision` (auto, bf16, fp32) on `accelerator`: Lightning's bf16 autocast
    (`bf16-mixed`) where `autocast_dtype` picks bf16, else `32-true`."""
    return "bf16-mixed" if autocast_dtype(precision, device_of(accelerator)) is not None else "32-true"


def autocast(precision: str, device: torch.device):
    """A context that runs its matrix work in `autocast_dtype(precision, device)`."""
    dtype = autocast_dtype(precision, device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
