"""Fixtures shared by the unit tests, and the threads of each parallel worker."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n W`` (``make test``), give each worker its share of the cores, and the kernels it starts.

    W workers each running torch with every core's thread oversubscribe the machine, which made
    training many times slower on 2 cores; with ``cores // W`` threads each (the notebook kernels and
    command-line runs a worker starts inherit the variables) the workers share the cores instead.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    threads = str(max(1, len(os.sched_getaffinity(0)) // int(workers)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = threads
    torch.set_num_threads(int(threads))


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors: one intra-op thread is faster, and much faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
