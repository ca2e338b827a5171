"""The paper's theory and the measurements that feed it, under one name.

`keras_specdec.analysis` is the documented public name; the code lives in two
modules:

- `keras_specdec.theory`: pure functions of alpha, gamma and c (Leviathan et
  al., 2023, §3): `acceptance_rate`, `expected_tokens_per_step`,
  `expected_speedup`, `expected_speedup_with_verify_cost`,
  `optimal_num_speculative_tokens`, `expected_ops_increase`,
  `speedup_lower_bound`.
- `keras_specdec.measure`: timers and estimates that run models:
  `timed_call`, `median_seconds`, `measure_step_seconds`,
  `measure_cost_coefficient`, `measure_verify_costs`, `estimate_alpha`.

>>> round(expected_tokens_per_step(0.8, 4), 4)
3.3616
>>> round(expected_speedup(0.8, 4, 0.05), 4)
2.8013
"""

from keras_specdec.measure import (
    estimate_alpha,
    measure_cost_coefficient,
    measure_step_seconds,
    measure_verify_costs,
    median_seconds,
    timed_call,
)
from keras_specdec.theory import (
    acceptance_rate,
    expected_ops_increase,
    expected_speedup,
    expected_speedup_with_verify_cost,
    expected_tokens_per_step,
    optimal_num_speculative_tokens,
    speedup_lower_bound,
)

__all__ = [
    "acceptance_rate",
    "estimate_alpha",
    "expected_ops_increase",
    "expected_speedup",
    "expected_speedup_with_verify_cost",
    "expected_tokens_per_step",
    "measure_cost_coefficient",
    "measure_step_seconds",
    "measure_verify_costs",
    "median_seconds",
    "optimal_num_speculative_tokens",
    "speedup_lower_bound",
    "timed_call",
]
