"""The same numbers on every x86 CPU: pin torch's CPU kernels to one instruction set.

torch picks its CPU kernels at run time from what the processor offers: its own vectorised
kernels (AVX-512 or AVX2), oneDNN's convolutions and MKL's matrix products each take a
different code path, and so a different order of floating-point additions, on an AVX-512
host than on an AVX2 one. Same code, same seed, different weights after a few hundred steps
(measured: the embedded default's pre-trained and fine-tuned accuracies moved by up to 4
points between two 2-core hosts). Pinning all three to AVX2, which every x86-64 CPU of the
last decade has, makes them compute the same thing everywhere, at some speed cost on
AVX-512 hosts (docs/reproducibility.md).

The pins are environment variables read when each library first computes, so they are set
when ``benchmark`` is imported, before any kernel runs; a variable the user set wins, and
``LDIFS_BENCH_CPU_ISA=native`` leaves all three alone. What still varies is listed in
docs/reproducibility.md (thread count, non-x86 CPUs, GPUs).
"""

from __future__ import annotations

import os

OPT_OUT = "LDIFS_BENCH_CPU_ISA"
# torch's own vectorised kernels; oneDNN (old and new name of its variable); MKL's
# conditional numerical reproducibility branch.
PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
}


def pin_cpu_kernels() -> dict[str, str]:
    """Set each pin the environment does not already set; returns the values in force."""
    if os.environ.get(OPT_OUT, "").lower() == "native":
        return {}
    for key, value in PINS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in PINS}


def cpu_kernels_in_force() -> dict[str, str]:
    """What the manifest records: torch's kernel capability and each pin's value."""
    import torch

    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), **{k: os.environ.get(k, "") for k in PINS}}


# What torch 2.x's ATEN_CPU_CAPABILITY accepts, by processor (aten/src/ATen/native/DispatchStub.cpp,
# compared case-sensitively); any other value torch ignores with a warning, running its own choice.
CAPABILITIES = {"x86_64": ("default", "avx2", "avx512"), "aarch64": ("default", "sve256")}
CAPABILITIES.update({"amd64": CAPABILITIES["x86_64"], "arm64": CAPABILITIES["aarch64"]})
CAPABILITIES.update({"ppc64le": ("default", "vsx"), "s390x": ("default", "zvector")})


def check_cpu_capability() -> None:
    """A user-set ATEN_CPU_CAPABILITY that torch does not understand is one line naming the
    valid values: torch would ignore it and run (and the manifest record) another capability."""
    import platform

    from benchmark.errors import UserError

    value = os.environ.get("ATEN_CPU_CAPABILITY")
    valid = CAPABILITIES.get(platform.machine().lower(), ("default",))
    pinned = value == PINS["ATEN_CPU_CAPABILITY"]  # the suite's own pin (elsewhere than x86, torch ignores it)
    if value is not None and value not in valid and not pinned:
        raise UserError(
            f"ATEN_CPU_CAPABILITY={value!r} is not a value torch accepts on {platform.machine()}; "
            f"valid choices: {', '.join(valid)} (or unset it: the suite pins avx2 on x86)"
        )
