"""Hypothesis strategies shared by the spec tests (importable: `from strategies import ...`)."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal, 1.18e-38
FLOAT32_SMALLEST_SUBNORMAL = float(np.finfo(np.float32).smallest_subnormal)  # 1.4e-45

# Any finite float32, across the whole range (not only small numbers).
finite_f32 = st.floats(
    min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX, allow_nan=False, allow_infinity=False, width=32
)
# Moderate values where float64 oracles and float32 results can be compared with a tolerance.
moderate_f32 = st.floats(min_value=-30.0, max_value=30.0, allow_nan=False, width=32)

# The values where float32 arithmetic breaks first: the largest finite float, half of it (whose
# sums and differences overflow), the smallest normal, subnormals (XLA:CPU flushes them to 0),
# the edges of Keras' 1e-7 clip, and exact 0 and 1.
_SPECIAL_MAGNITUDES = (
    FLOAT32_MAX,
    float(np.nextafter(np.float32(FLOAT32_MAX), np.float32(0))),
    FLOAT32_MAX / 2,
    1.8e19,  # x² overflows just above this
    1e4,
    1.0,
    1e-7,
    FLOAT32_TINY,
    1e-40,
    FLOAT32_SMALLEST_SUBNORMAL,
    0.0,
)


def extreme_f32(max_abs=FLOAT32_MAX):
    """Finite float32 values with at most ``max_abs`` magnitude, drawing the extremes above (and
    their negatives) about half the time, any value in range otherwise."""
    specials = [v for v in _SPECIAL_MAGNITUDES if v <= max_abs] + [max_abs]
    special = st.sampled_from(sorted({float(np.float32(s)) for s in specials}))
    signed = st.tuples(special, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])
    bound = float(np.float32(max_abs))
    if bound > max_abs:  # rounding up to float32 would leave the range
        bound = float(np.nextafter(np.float32(max_abs), np.float32(0)))
    anywhere = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32)
    return st.one_of(signed, anywhere)


def unit_f32(low=0.0):
    """float32 values in [low, 1] (probabilities, masks), with 0, 1, 1 - 6e-8, the 1e-7 clip, the
    smallest normal and subnormals drawn about half the time."""
    edges = [0.0, 1.0, float(np.float32(1 - 6e-8)), 1e-7, 1 - 1e-7, 0.5, FLOAT32_TINY, 1e-40]
    edges += [FLOAT32_SMALLEST_SUBNORMAL]
    edges = sorted({float(np.float32(v)) for v in edges if v >= low})
    return st.one_of(st.sampled_from(edges), st.floats(low, 1.0, width=32))


def f32_arrays(shape, elements=moderate_f32):
    """float32 arrays of `shape` (a tuple or a strategy of tuples)."""
    return hnp.arrays(np.float32, shape, elements=elements)


def batch_shapes(min_batch=1, max_batch=6, min_classes=2, max_classes=7):
    """(N, K) shapes for classification tests."""
    return st.tuples(st.integers(min_batch, max_batch), st.integers(min_classes, max_classes))
