"""Test-run setup: one JAX compilation cache shared by the whole run.

Many tests compile the same program (the tiny targets' plain greedy
`generate()` on the same inputs, the same sampler on the same pair); with a
persistent compilation cache, the xdist workers and the subprocesses the
tests start (sharding worker, examples, notebook kernel) compile each such
program once. The cache lives in a fresh temporary folder per run, removed
at the end, unless `JAX_COMPILATION_CACHE_DIR` is set; results do not depend
on it (a cache hit loads the executable XLA built for the same program).
"""

import os
import shutil
import tempfile

_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # xdist workers inherit the controller's environment: one folder per run.
    _OWN_CACHE = tempfile.mkdtemp(prefix="jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


def pytest_unconfigure(config):
    # The process that made the folder (the controller under xdist) removes it.
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
