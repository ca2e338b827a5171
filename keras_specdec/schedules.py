"""Gamma schedules: how many proposals the next round makes (batch level).

A schedule is three functions over its state (an int32 scalar carried by the
`while_loop`): `init()`, `next_gamma(schedule_state, stats)` and
`update(schedule_state, all_accepted)`.
"""

from keras import ops

from keras_specdec import analysis


class FixedSchedule:
    """gamma proposals every round."""

    def __init__(self, gamma):
        self.gamma = gamma

    def init(self):
        return ops.zeros((), "int32")

    def next_gamma(self, schedule_state, stats):
        return ops.convert_to_tensor(self.gamma, "int32")

    def update(self, schedule_state, all_accepted):
        return schedule_state


class HeuristicSchedule:
    """Hugging Face's `update_candidate_strategy` "heuristic": start at 5,
    +2 after a round in which every row accepted every proposal, else -1,
    within 1 .. max_gamma."""

    def __init__(self, max_gamma, start=5):
        self.max_gamma = max_gamma
        self.start = min(start, max_gamma)

    def init(self):
        return ops.convert_to_tensor(self.start, "int32")

    def next_gamma(self, schedule_state, stats):
        return schedule_state

    def update(self, schedule_state, all_accepted):
        grown = ops.where(all_accepted, schedule_state + 2, schedule_state - 1)
        return ops.cast(ops.clip(grown, 1, self.max_gamma), "int32")


class TheoremSchedule:
    """The gamma among `candidates` that maximises Theorem 3.8 (with the
    verify cost v, `analysis.expected_speedup_with_verify_cost`) for the
    running acceptance rate: (accepted + 1) / (judged + 2) over `prior`
    (earlier calls) and this call's counters, a uniform prior."""

    def __init__(self, candidates, cost_coefficient, verify_costs, prior):
        self.candidates = list(candidates)
        self.cost_coefficient = float(cost_coefficient)
        self.verify_costs = list(verify_costs)  # v per candidate
        self.prior = prior  # SpeculativeStats of earlier calls

    def init(self):
        return ops.zeros((), "int32")

    def next_gamma(self, schedule_state, stats):
        totals = self.prior + stats
        alpha = (ops.cast(totals.accepted_tokens, "float32") + 1.0) / (
            ops.cast(totals.draft_tokens, "float32") + 2.0
        )
        alpha = ops.minimum(alpha, 1.0 - 1e-6)
        speedup = analysis.expected_speedup_with_verify_cost(
            alpha,
            ops.convert_to_tensor(self.candidates, "float32"),
            self.cost_coefficient,
            ops.convert_to_tensor(self.verify_costs, "float32"),
        )
        candidates = ops.convert_to_tensor(self.candidates, "int32")
        return ops.take(candidates, ops.argmax(speedup))

    def update(self, schedule_state, all_accepted):
        return schedule_state
