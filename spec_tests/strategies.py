"""Hypothesis strategies shared by the spec tests (importable: `from strategies import ...`)."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT32_MAX = float(np.finfo(np.float32).max)

# Any finite float32, across the whole range (not only small numbers).
finite_f32 = st.floats(
    min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX, allow_nan=False, allow_infinity=False, width=32
)
# Moderate values where float64 oracles and float32 results can be compared with a tolerance.
moderate_f32 = st.floats(min_value=-30.0, max_value=30.0, allow_nan=False, width=32)


def f32_arrays(shape, elements=moderate_f32):
    """float32 arrays of `shape` (a tuple or a strategy of tuples)."""
    return hnp.arrays(np.float32, shape, elements=elements)


def batch_shapes(min_batch=1, max_batch=6, min_classes=2, max_classes=7):
    """(N, K) shapes for classification tests."""
    return st.tuples(st.integers(min_batch, max_batch), st.integers(min_classes, max_classes))
