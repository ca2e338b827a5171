"""The batch layout of the decoding states under `keras.distribution`.

Keras' model-parallel layout maps (`GemmaBackbone.get_layout_map` and the
others KerasHub ships) shard weights over both mesh axes: heads and vocabulary
over "model", and the hidden / intermediate dims over the mesh axis that the
distribution also names its batch axis (`ModelParallel(batch_dim_name=...)`).
Activations sharded over that axis by rows then meet weights sharded over it
by features, and XLA all-gathers the activations (an attention output, a K/V
slice) before the matmul. Plain `generate()` avoids it: its loop keeps the
rows of a model whose weights use the batch axis on every device, and all its
collectives are tiny (argmax candidates, token buffers) or all-reduces.

The sampler does the same, per model: before the decoding loop it
constrains the batch axis of the target's state (and of the token and index
buffers) to be replicated over the batch mesh axis when the target's weights
use that axis, and the draft's state likewise by the draft's weights. Other
axes stay as XLA propagates them (heads over "model"). Under `DataParallel`,
or a layout map that keeps weights off the batch axis, nothing is
constrained: rows stay sharded over devices, as the data layout puts them.
Inside the loop the target's verify inputs are replicated too
(`target_rows`): a draft with sharded rows hands over its proposals.
Constraining the state again before every round made XLA gather the whole
cache (measured), so the loop carries the layout set at its start.
"""

from typing import Any, NamedTuple

import jax
import keras
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


class BatchLayouts(NamedTuple):
    """Which decoding states keep their rows replicated (see module doc)."""

    mesh: Any  # the distribution's `jax.sharding.Mesh`
    target: bool  # the target's weights use the batch mesh axis
    draft: bool  # the draft's weights use the batch mesh axis


def weights_use_batch_axis(model, batch_dim_name):
    """Whether any of `model`'s weights is laid out over `batch_dim_name`.

    Reads the layouts Keras assigned the variables when they were created
    (`Variable._layout`), so it works while `generate()` traces (the values
    are tracers then). A model without weights (a model-free draft) or built
    outside any distribution (no layouts) uses no mesh axis.
    """
    for variable in getattr(model, "weights", ()):
        layout = getattr(variable, "_layout", None)
        axes = getattr(layout, "axes", None) or ()
        if batch_dim_name in axes:
            return True
    return False


def batch_layouts(target, draft):
    """The `BatchLayouts` of this target and draft under the distribution in
    effect, or None when there is none (or it names no batch axis)."""
    distribution = keras.distribution.distribution()
    batch_dim_name = getattr(distribution, "batch_dim_name", None)
    if distribution is None or batch_dim_name is None:
        return None
    layouts = BatchLayouts(
        mesh=distribution.device_mesh.backend_mesh,
        target=weights_use_batch_axis(target, batch_dim_name),
        draft=weights_use_batch_axis(draft, batch_dim_name),
    )
    return layouts if (layouts.target or layouts.draft) else None


def replicate_rows(tree, axes, mesh):
    """Constrain each leaf's batch axis (`axes`, None: no batch axis) to be
    replicated; the other axes stay unconstrained."""

    def constrain(x, axis):
        if axis is None or getattr(x, "ndim", 0) == 0:
            return x
        spec = [P.UNCONSTRAINED] * x.ndim
        spec[axis] = None
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*spec)))

    leaves, treedef = jax.tree.flatten(tree)
    leaf_axes = jax.tree.leaves(axes, is_leaf=lambda a: a is None)
    return jax.tree.unflatten(
        treedef, [constrain(x, a) for x, a in zip(leaves, leaf_axes)]
    )


def target_rows(setup, *xs):
    """The target's per-row inputs (batch first), replicated when the
    target's rows are (a draft's proposals arrive sharded by its rows)."""
    layouts = setup.batch_layouts
    if layouts is None or not layouts.target:
        return xs
    return tuple(replicate_rows(x, 0, layouts.mesh) for x in xs)


def constrain_setup(setup):
    """`setup` (a `rounds.RoundSetup`) with its per-row buffers (`forced`,
    `prompt`) replicated when the target's rows are."""
    layouts = setup.batch_layouts
    if layouts is None or not layouts.target:
        return setup
    return setup._replace(
        forced=replicate_rows(setup.forced, 0, layouts.mesh),
        prompt=replicate_rows(setup.prompt, 0, layouts.mesh),
    )


def constrain_round_state(setup, state):
    """`state` (a `rounds.RoundState`) with the batch layouts of
    `setup.batch_layouts` applied; unchanged when there are none."""
    layouts = setup.batch_layouts
    if layouts is None:
        return state
    if layouts.target:
        state = state._replace(
            tokens=replicate_rows(state.tokens, 0, layouts.mesh),
            index=replicate_rows(state.index, 0, layouts.mesh),
            target_state=replicate_rows(
                state.target_state, setup.target_axes, layouts.mesh
            ),
        )
    if layouts.draft and setup.draft_axes is not None:
        state = state._replace(
            draft_state=replicate_rows(
                state.draft_state, setup.draft_axes, layouts.mesh
            )
        )
    return state
