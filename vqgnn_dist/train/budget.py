"""``--memory-budget``: the memory one training process is held to, enforced by the kernel.

A budget is set as the process's soft ``RLIMIT_DATA`` (Linux): the limit on its
private writable memory (heap, anonymous maps, thread stacks), which is what
tensors, arrays and Python objects take. The limit is placed so that the budget
reads like resident memory, the peak RSS every run reports (:class:`_Baseline`).
An allocation that would cross it fails
at once, inside the process, instead of the kernel's OOM killer ending the run
later; :func:`memory_budget` turns that failure into one line naming the budget
and the measured need (what the process held plus what it asked for). On a CUDA
device the budget also caps the device memory this process may take
(``torch.cuda.set_per_process_memory_fraction``).

Each training process holds itself to it: the process of a one-process run
(:func:`vqgnn_dist.run.run`) and every Ray worker
(:func:`vqgnn_dist.distributed.worker.train_worker`). The driver of a distributed
run, which partitions the graph once, and the codebook server are not held to it.
"""

from __future__ import annotations

import re
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from vqgnn_dist.config import ConfigError, memory_bytes

# torch's CPU allocator: "... you tried to allocate 524288000 bytes. Error code 12"
_TORCH_ASK = re.compile(r"tried to allocate (\d+) bytes")
# torch's CUDA allocator: "CUDA out of memory. Tried to allocate 2.00 GiB."
_CUDA_ASK = re.compile(r"Tried to allocate ([\d.]+) (B|KiB|MiB|GiB|TiB)")


class MemoryBudgetError(ConfigError):
    """A process would exceed its ``--memory-budget``; the line names budget and need."""


def _status(field: str) -> int:
    """A ``kB`` field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field} line")


class _Baseline:
    """How ``VmData``, the quantity ``RLIMIT_DATA`` limits, maps to resident memory.

    ``VmData`` counts address space a process reserved but never touched (thread
    stacks, allocator arenas: about 1.2 GiB in a Ray worker) and leaves out the
    resident pages of its libraries' code, which RSS counts. Taken when the budget is
    set, these make ``held()`` the process's RSS then, and its growth the growth of
    ``VmData`` since, so that a budget reads like the peak RSS every run reports.
    """

    def __init__(self) -> None:
        self.untouched = max(0, _status("VmData") - _status("RssAnon"))
        self.shared = _status("RssFile") + _status("RssShmem")

    def held(self) -> int:
        return _status("VmData") - self.untouched + self.shared

    def data_limit(self, budget: int) -> int:
        """The ``RLIMIT_DATA`` at which ``held()`` reaches ``budget``."""
        return budget - self.shared + self.untouched


def gib(n: float) -> str:
    """``n`` bytes as a ``--memory-budget`` value, e.g. ``3.75GiB``."""
    return f"{n / 2**30:.2f}GiB"


def asked_bytes(err: BaseException) -> int:
    """The size of the allocation that failed, from the allocator's message (0 if unsaid)."""
    text = str(err)
    match = _TORCH_ASK.search(text)
    if match:
        return int(match.group(1))
    match = _CUDA_ASK.search(text)
    if match:
        units = {"B": 0, "KiB": 1, "MiB": 2, "GiB": 3, "TiB": 4}
        return int(float(match.group(1)) * 1024 ** units[match.group(2)])
    return 0


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation that failed (Python, NumPy, torch CPU or CUDA)."""
    if isinstance(err, MemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text
    )


def _device_cap(fraction: float) -> None:
    """Cap this process's share of its CUDA device (1.0: no cap); nothing without CUDA."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(fraction)


def _device_fraction(budget: int) -> float:
    import torch

    if not torch.cuda.is_available():
        return 1.0
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return min(1.0, budget / total)


def _held_for(err: BaseException, base: _Baseline) -> int:
    """What the process held where ``err``'s allocation failed: device or host memory."""
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        return torch.cuda.memory_reserved()
    return base.held()


@contextmanager
def memory_budget(budget: str | None, who: str) -> Iterator[None]:
    """Hold the code inside to ``budget`` (e.g. ``"6GiB"``; None: no budget).

    Raises :class:`MemoryBudgetError` when this process already holds more than the
    budget, or when an allocation inside fails under it; ``who`` names the process
    in the line (``"the one-process run"``, ``"worker 1"``). The previous limits are
    restored on the way out.
    """
    if budget is None:
        yield
        return
    if not sys.platform.startswith("linux"):
        raise ConfigError("--memory-budget is enforced with RLIMIT_DATA, which needs Linux")
    limit = memory_bytes(budget)
    base = _Baseline()
    held = base.held()
    if held > limit:
        raise MemoryBudgetError(
            f"--memory-budget {budget}: {who} already holds {gib(held)} before training "
            f"(the graph and the libraries); give --memory-budget {gib(held * 1.25)} or "
            "more, or train on more workers"
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY and base.data_limit(limit) > hard:
        raise ConfigError(
            f"--memory-budget {budget} is above this process's hard data limit "
            f"(ulimit -d {hard // 1024}); raise it or give a smaller --memory-budget"
        )
    resource.setrlimit(resource.RLIMIT_DATA, (base.data_limit(limit), hard))
    _device_cap(_device_fraction(limit))
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        held, asked = _held_for(err, base), asked_bytes(err)
        raise MemoryBudgetError(
            f"--memory-budget {budget}: {who} needs at least {gib(held + asked)} (it held "
            f"{gib(held)} and asked for {gib(asked)} more); give --memory-budget "
            f"{gib((held + asked) * 1.25)} or more, or train on more workers"
        ) from None
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
        _device_cap(1.0)
