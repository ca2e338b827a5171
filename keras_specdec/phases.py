"""The names the round code declares for its phases.

Each phase function of a round (`rounds.propose`, `verify`, `accept`,
`commit`) is decorated with `@phase(name)`: its body runs inside
`jax.named_scope("specdec." + name)`, so every op it emits carries that name
in its HLO metadata (`op_name="jit(...)/while/body/specdec.verify/..."`).
Tools find a round's phases through these names, not through file or
function names (`keras_specdec.bench.profiling`).

Example:

    from keras_specdec.phases import phase

    @phase("verify")
    def verify(setup, state, k):
        ...
"""

import functools

import jax

# The scope of phase `name` is PREFIX + name.
PREFIX = "specdec."
# The phases of a round, in the order a round runs them.
PHASES = ("propose", "verify", "accept", "commit")


def scope(name):
    """`jax.named_scope(PREFIX + name)`: for phase work outside the phase
    functions, e.g. `with scope("propose"): block = draft.propose_block(...)`.

    Args:
        name: one of `PHASES`.
    """
    if name not in PHASES:
        raise ValueError(f"`name` must be one of {PHASES}, got {name!r}.")
    return jax.named_scope(PREFIX + name)


def phase(name):
    """Decorator: run the function inside `scope(name)`
    (`jax.named_scope(PREFIX + name)`).

    Args:
        name: one of `PHASES`.

    Returns:
        A decorator; the decorated function behaves as before (same
        arguments, results, docstring) and records `name` as `.phase`.
    """
    scope(name)  # checks the name

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with scope(name):
                return function(*args, **kwargs)

        wrapper.phase = name
        return wrapper

    return decorate
