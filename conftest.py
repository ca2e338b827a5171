import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A subprocess entry point, not a test module (see its docstring).
collect_ignore = ["tests/sharding_worker.py"]
