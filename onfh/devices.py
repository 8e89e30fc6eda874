"""Choosing where the networks run (CPU, CUDA, Apple MPS) and how many CPU threads to use.

Shared by inference and training so both pick devices and threads the same way.
"""

from __future__ import annotations

import os

from onfh.errors import OnfhError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
THREADS_ENV = "ONFH_NUM_THREADS"


def available_cpu_count() -> int:
    """CPU cores this process may run on (respects affinity masks and container limits)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, count)


def configure_cpu_threads(threads: int | None = None, use_torch: bool = True) -> int:
    """Set SimpleITK's (and torch's) CPU thread count; return the count used.

    Args:
        threads: explicit count; else ``$ONFH_NUM_THREADS``; else the cores this process
            may use (with torch: its default, physical cores, capped at those). More
            threads than cores only adds contention, which matters on shared machines.
        use_torch: also set torch's count. ``False`` for the ONNX backend, which must not
            import torch; its sessions take the returned count.
    """
    import SimpleITK as sitk

    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise OnfhError(f"{THREADS_ENV}={env!r} is not a whole number") from None
        elif use_torch:
            import torch

            threads = min(torch.get_num_threads(), available_cpu_count())
        else:
            threads = available_cpu_count()
    if threads < 1:
        raise OnfhError(f"thread count must be at least 1, got {threads}")
    if use_torch:
        import torch

        torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return threads


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto"):
    """Turn ``auto|cpu|cuda|mps`` into a ``torch.device``.

    ``auto`` prefers CUDA, then MPS, then CPU. Asking for an accelerator that is not
    there is an ``OnfhError`` (a silent fall-back would hide a broken install).
    """
    import torch

    choice = (name or "auto").lower()
    if choice not in DEVICE_CHOICES and not choice.startswith("cuda:"):
        raise OnfhError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise OnfhError(
            f"device {name!r} requested but CUDA is not available in this torch ({torch.__version__})"
        )
    if choice == "mps" and not _mps_available():
        raise OnfhError("device 'mps' requested but Apple MPS is not available")
    return torch.device(choice)


def describe_device(device) -> str:
    """Human-readable device name for reports, e.g. ``cpu (2 threads)`` or ``cuda (NVIDIA ...)``."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if kind == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'})"
    return kind
