"""Tier-2 problems shared by the optimizer spec tests: a parabola, Rosenbrock and a small CNN.

The three losses share no parameters, so one gradient holds each problem's own gradient and an
element-wise optimizer runs the three independently in one compiled loop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def cnn_apply(p, x):
    y = jax.lax.conv_general_dilated(
        x.astype(p["conv"].dtype),
        p["conv"],
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    y = jax.nn.relu(y + p["conv_b"]).mean(axis=(1, 2))
    return y @ p["dense"] + p["dense_b"]


def make_problems():
    """(float32 initial params, jitted gradient of the summed loss), compiled once per module."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 6, 6, 2)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, 8))
    params = {
        "parabola": jnp.asarray([2.0, -1.5, 0.5], jnp.float32),
        "rosenbrock": jnp.asarray([-1.2, 1.0], jnp.float32),
        "cnn": {
            "conv": jnp.asarray(rng.standard_normal((3, 3, 2, 4)) * 0.3, jnp.float32),
            "conv_b": jnp.zeros(4, jnp.float32),
            "dense": jnp.asarray(rng.standard_normal((4, 3)) * 0.3, jnp.float32),
            "dense_b": jnp.zeros(3, jnp.float32),
        },
    }

    def loss(p):
        parabola = jnp.sum(jnp.asarray([1.0, 3.0, 10.0]) * p["parabola"] ** 2)
        r = p["rosenbrock"]
        rosen = (1 - r[0]) ** 2 + 100 * (r[1] - r[0] ** 2) ** 2
        logits = cnn_apply(p["cnn"], x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return parabola + rosen + ce

    return params, jax.jit(jax.grad(loss))


_apply = jax.jit(optax.apply_updates)


def trajectory(tx, problems, steps=100):
    """((params, state) after `steps`, trajectory tree with a leading [steps] axis)."""
    params, grad_fn = problems
    update = jax.jit(tx.update)
    state, out = tx.init(params), []
    for _ in range(steps):
        updates, state = update(grad_fn(params), state, params)
        params = _apply(params, updates)
        out.append(params)
    return (params, state), jax.tree.map(lambda *xs: jnp.stack(xs), *out)
