"""Independent CPU jobs side by side: one process and one torch thread each.

The tiny profile's runs are small matrix products that gain little from a second thread,
while two processes use two cores fully. Processes are spawned (not forked), so each starts
with a clean torch; results come back in the order of the inputs.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import torch

Result = TypeVar("Result")


def default_jobs(device: torch.device) -> int:
    """Processes to use: up to 2 on a CPU (one a core), 1 on a GPU (they would share it)."""
    return 1 if device.type == "cuda" else min(2, os.cpu_count() or 1)


def _on_one_thread(function: Callable[..., Result], args: tuple[Any, ...]) -> Result:
    """Run one call in a worker: one torch thread, no progress bars (stderr goes nowhere)."""
    import datasets
    import transformers

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    return function(*args)


def map_in_processes(function: Callable[..., Result], calls: Sequence[tuple[Any, ...]],
                     jobs: int) -> list[Result]:
    """`[function(*args) for args in calls]`, in `jobs` spawned processes of one thread each
    (in this process, unchanged, when `jobs` < 2 or there is one call). `function` must be
    importable by name (a module-level function)."""
    if jobs < 2 or len(calls) < 2:
        return [function(*args) for args in calls]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(calls)), mp_context=context) as pool:
        return list(pool.map(_on_one_thread, [function] * len(calls), calls))
