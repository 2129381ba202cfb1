"""Activation functions from the lecture (sigmoid, tanh, ReLU, Leaky ReLU, Maxout, ELU) and the
ones models need beside them (ReLU6, SELU, GELU, SiLU, softplus, softmax, log-softmax).

Data contract:

* Inputs are floating arrays of any shape (integer and bool inputs are promoted to the default
  float dtype; complex inputs raise a ``TypeError``); every function except `maxout`, `softmax`
  and `log_softmax` is elementwise and returns an array of the same shape and dtype. `softmax` and
  `log_softmax` work along ``axis``; `maxout` shrinks ``axis`` by its number of pieces.
* All functions are pure, and safe under `jax.jit`, `jax.vmap` and `jax.grad`.
* Stability: for every finite float32 input the value and the gradient are finite (no inf, no
  NaN), across the whole float32 range, not only for small numbers. The two exceptions are
  values whose exact result is itself beyond float32: `selu` for ``x > 3.24e38`` (its scale is
  1.0507), `relu` with ``negative_slope > 1`` where ``a·(x − t)`` is, and `log_softmax` when the
  spread of one row exceeds float32's range.
* Defaults follow the lecture where a slide gives one: Leaky ReLU is ``max(0.1 x, x)``.
  `jax.nn.leaky_relu` uses a slope of 0.01 and Keras 0.2; PyTorch uses 0.01.
* Derivatives at the kinks follow `jax.nn`: ReLU'(0) = 0, ReLU6'(0) = ReLU6'(6) = 0, Leaky
  ReLU'(0) = 1.

`get(name)` turns a Keras-style identifier (``"relu"``, ``"swish"``, ``None`` for linear) into the
function.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnn._validation import lookup

__all__ = [
    "elu",
    "gelu",
    "get",
    "leaky_relu",
    "linear",
    "log_softmax",
    "maxout",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "swish",
    "tanh",
]

# SELU's fixed-point constants (Klambauer et al. 2017, eq. 14), as in jax.nn.selu and Keras.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# Beyond |x| > 20 the tanh-approximate GELU's gate σ(2u) is exactly 0 or 1 in float32 (|2u| > 600,
# past exp's range), with a zero derivative, so the cubic is evaluated on a clipped input: this
# keeps x³ from overflowing, which makes jax.nn.gelu's gradient NaN for |x| > ~1e13.
_GELU_TANH_CLIP = 20.0


def _float(x, name: str = "x") -> jax.Array:
    """`x` as a JAX array, promoting integers to the default float dtype."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    if jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_:
        return x.astype(jnp.result_type(float))
    raise TypeError(f"{name} must be a real floating array, got dtype {x.dtype}")


def sigmoid(x: jax.typing.ArrayLike) -> jax.Array:
    r"""Logistic sigmoid, the slide's :math:`\sigma(x) = 1 / (1 + e^{-x})`.

    Squashes to (0, 1); its derivative :math:`\sigma'(x) = \sigma(x)(1 - \sigma(x)) \le 1/4`
    is why deep sigmoid stacks suffer from vanishing gradients (the slide's first problem).
    Saturates to exactly 0 or 1 in float32 for ``|x| > ~17`` / ``x < -88``, with a zero (not NaN)
    gradient there. Same as `jax.nn.sigmoid`, `keras.activations.sigmoid`, `torch.sigmoid`.

    Args:
        x: any-shape floating array.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> np.asarray(sigmoid(jnp.array([0.0, 2.0]))).round(4)
        array([0.5   , 0.8808], dtype=float32)
    """
    return jax.nn.sigmoid(_float(x))


def tanh(x: jax.typing.ArrayLike) -> jax.Array:
    r"""Hyperbolic tangent, :math:`\tanh(x) = 2\sigma(2x) - 1`.

    Zero-centred, range (-1, 1); :math:`\tanh'(x) = 1 - \tanh^2(x) \le 1` still vanishes when
    saturated (the slide). Same as `jnp.tanh`, `keras.activations.tanh`, `torch.tanh`.

    Args:
        x: any-shape floating array.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> tanh(jnp.array([0.0, 1.0]))
        Array([0.       , 0.7615942], dtype=float32)
    """
    return jnp.tanh(_float(x))


def _option(name: str, value, *, allow_none: bool = False, allow_inf: bool = False):
    """Check a scalar option ``>= 0`` (None allowed when ``allow_none``); traced values pass."""
    if value is None and allow_none:
        return
    if isinstance(value, jax.core.Tracer):
        return
    try:
        v = np.asarray(value)
    except Exception:  # noqa: BLE001 - reported below
        v = None
    if v is None or v.shape != () or v.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(v)
    if not (v >= 0 and (allow_inf or np.isfinite(v))):
        expected = "a number >= 0" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def relu(
    x: jax.typing.ArrayLike,
    negative_slope: float = 0.0,
    max_value: float | None = None,
    threshold: float = 0.0,
) -> jax.Array:
    r"""Rectified linear unit, the slide's :math:`\max(0, x)`, with Keras' three options.

    With the defaults it is :math:`\max(0, x)`: it does not saturate for ``x > 0``;
    :math:`\mathrm{ReLU}'(x) \in \{0, 1\}` (0 at the kink, as in `jax.nn.relu`; PyTorch also uses
    0). Units whose input stays negative get no gradient: the slide's "dead ReLU".

    The options follow ``keras.activations.relu`` (Keras 3), including how they combine: with
    slope :math:`a` = ``negative_slope``, cap :math:`M` = ``max_value`` and threshold :math:`t`,

    .. math:: f(x) = \begin{cases} \min(x, M) & x > t \\ a\,(x - t) & x \le t \end{cases}

    (no cap when ``max_value`` is None). For :math:`t > 0` the function jumps from 0 to :math:`t`
    at :math:`x = t`, as Keras' does. Only ``negative_slope`` set is `leaky_relu` with that slope;
    ``max_value=6`` alone is `relu6`. The derivative is piecewise constant (0 at the kinks, as
    `jax.nn.relu`; 1 at 0 for the pure leaky case, as `jax.nn.leaky_relu`), so finite everywhere.
    Like ``keras.layers.ReLU`` (``keras.activations.relu`` itself does not check), negative or NaN
    options are refused. PyTorch spells these ``LeakyReLU``, ``Hardtanh(0, M)`` and
    ``Threshold(t, 0)`` separately.

    Args:
        x: any-shape floating array.
        negative_slope: :math:`a \ge 0`, the slope below the threshold (Keras' name).
        max_value: :math:`M \ge 0` or None, the largest value returned.
        threshold: :math:`t \ge 0`, below which values are damped (``a > 0``) or zeroed.

    Returns:
        Array of the shape and dtype of ``x``.

    Raises:
        ValueError: an option that is negative or NaN (infinite for ``negative_slope`` and
            ``threshold``), naming it and the value.
        TypeError: an option that is not a real number.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([-10.0, -5.0, 0.0, 5.0, 10.0])
        >>> relu(x)
        Array([ 0.,  0.,  0.,  5., 10.], dtype=float32)
        >>> relu(x, negative_slope=0.5)
        Array([-5. , -2.5,  0. ,  5. , 10. ], dtype=float32)
        >>> relu(x, max_value=5.0)
        Array([0., 0., 0., 5., 5.], dtype=float32)
        >>> relu(x, threshold=5.0)
        Array([ 0.,  0.,  0.,  0., 10.], dtype=float32)
        >>> relu(x, negative_slope=0.1, max_value=8.0, threshold=2.0)  # a(x − t) below t
        Array([-1.2, -0.7, -0.2,  5. ,  8. ], dtype=float32)

    References:
        Nair & Hinton, `Rectified Linear Units Improve Restricted Boltzmann Machines
        <https://www.cs.toronto.edu/~hinton/absps/reluICML.pdf>`_, ICML 2010
    """
    _option("negative_slope", negative_slope)
    _option("max_value", max_value, allow_none=True, allow_inf=True)
    _option("threshold", threshold)
    x = _float(x)
    slope_on = _nonzero(negative_slope)
    threshold_on = _nonzero(threshold)
    if max_value is None and not threshold_on:
        if not slope_on:
            return jax.nn.relu(x)
        return jax.nn.leaky_relu(x, negative_slope=jnp.asarray(negative_slope, x.dtype))
    # Keras' general path, op for op: the part above t, capped, minus a·relu(t − x).
    if threshold_on:
        t = jnp.asarray(threshold, x.dtype)
        y = jnp.where(x > t, x, jnp.zeros((), x.dtype))
        negative_part = jax.nn.relu(-x + t)
    elif _equals(max_value, 6.0):
        y, max_value = jax.nn.relu6(x), None
        negative_part = jax.nn.relu(-x)
    else:
        y = jax.nn.relu(x)
        negative_part = jax.nn.relu(-x)
    if max_value is not None:
        y = jnp.clip(y, jnp.zeros((), x.dtype), jnp.asarray(max_value, x.dtype))
    if slope_on:
        y = y - jnp.asarray(negative_slope, x.dtype) * negative_part
    return y


def _nonzero(value) -> bool:
    """Static switch: False for a concrete 0, True otherwise (also when traced)."""
    return isinstance(value, jax.core.Tracer) or float(value) != 0.0


def _equals(value, number: float) -> bool:
    return value is not None and not isinstance(value, jax.core.Tracer) and float(value) == number


def leaky_relu(x: jax.typing.ArrayLike, negative_slope: float = 0.1) -> jax.Array:
    r"""Leaky ReLU, the slide's :math:`\max(0.1x, x)`: :math:`x` for :math:`x \ge 0`, else
    :math:`a x` with :math:`a` = ``negative_slope``.

    The default slope is the lecture's 0.1. Other libraries differ: `jax.nn.leaky_relu` and
    `torch.nn.LeakyReLU` default to 0.01, `keras.activations.leaky_relu` / `keras.layers.LeakyReLU`
    to 0.2. Pass ``negative_slope`` explicitly to reproduce them. The derivative is
    :math:`\{a, 1\}` (1 at 0, as in `jax.nn.leaky_relu`), so no unit ever dies.

    Args:
        x: any-shape floating array.
        negative_slope: slope :math:`a` for negative inputs (any real; the slide's ``max`` form
            equals this one only for ``0 <= a <= 1``).

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> leaky_relu(jnp.array([-2.0, 3.0]))
        Array([-0.2,  3. ], dtype=float32)
        >>> leaky_relu(jnp.array([-2.0, 3.0]), negative_slope=0.01)  # jax.nn's default
        Array([-0.02,  3.  ], dtype=float32)

    References:
        Maas, Hannun & Ng, `Rectifier Nonlinearities Improve Neural Network Acoustic Models
        <https://ai.stanford.edu/~amaas/papers/relu_hybrid_icml2013_final.pdf>`_, 2013
    """
    x = _float(x)
    return jnp.where(x >= 0, x, jnp.asarray(negative_slope, x.dtype) * x)


@jax.custom_jvp
def _expm1(x):
    """``expm1`` whose derivative is ``exp(x)``: JAX's ``expm1(x) + 1`` rounds to 0 for x < -17."""
    return jnp.expm1(x)


@_expm1.defjvp
def _expm1_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.expm1(x), jnp.exp(x) * t


def elu(x: jax.typing.ArrayLike, alpha: float = 1.0) -> jax.Array:
    r"""Exponential linear unit: :math:`x` for :math:`x > 0`, :math:`\alpha(e^x - 1)` otherwise.

    The slide's ELU: all benefits of ReLU, closer to zero-mean outputs, a negative saturation
    regime (to :math:`-\alpha`). With the default :math:`\alpha = 1` it is continuous and
    differentiable at 0 (derivative 1 from both sides). Computed with ``expm1`` on
    ``where(x > 0, 0, x)``, so the unused branch never overflows (no NaN gradient for large ``x``),
    and its derivative is :math:`\alpha e^x`, accurate down to float32's underflow
    (`jax.nn.elu`'s rounds to 0 below :math:`x \approx -17`).
    Same as `jax.nn.elu`, `keras.activations.elu`, `torch.nn.functional.elu`.

    Args:
        x: any-shape floating array.
        alpha: negative saturation value :math:`\alpha`.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> elu(jnp.array([-1.0, 2.0]))
        Array([-0.63212055,  2.        ], dtype=float32)

    References:
        Clevert, Unterthiner & Hochreiter, `Fast and Accurate Deep Network Learning by
        Exponential Linear Units (ELUs) <https://arxiv.org/abs/1511.07289>`_, 2015
    """
    x = _float(x)
    negative = jnp.asarray(alpha, x.dtype) * _expm1(jnp.where(x > 0, 0.0, x).astype(x.dtype))
    return jnp.where(x > 0, x, negative)


def selu(x: jax.typing.ArrayLike) -> jax.Array:
    r"""Scaled ELU: :math:`\lambda\,\mathrm{elu}(x, \alpha)` with the self-normalising constants
    :math:`\lambda \approx 1.0507`, :math:`\alpha \approx 1.6733` (Klambauer et al. 2017).

    Not on the slides; used by self-normalising networks. Same constants as `jax.nn.selu`,
    `keras.activations.selu`, `torch.nn.SELU`. For ``x > FLT_MAX / λ ≈ 3.24e38`` the exact value
    is beyond float32, so the result is inf: the only overflow among the elementwise functions.

    Args:
        x: any-shape floating array.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> np.asarray(selu(jnp.array([0.0, 1.0]))).round(4)
        array([0.    , 1.0507], dtype=float32)

    References:
        Klambauer et al., `Self-Normalizing Neural Networks <https://arxiv.org/abs/1706.02515>`_,
        2017
    """
    x = _float(x)
    return jnp.asarray(SELU_SCALE, x.dtype) * elu(x, SELU_ALPHA)


def gelu(x: jax.typing.ArrayLike, approximate: bool = False) -> jax.Array:
    r"""Gaussian error linear unit, :math:`x\,\Phi(x)` with :math:`\Phi` the standard normal CDF.

    * ``approximate=False`` (default): exact, :math:`\tfrac{x}{2}\,\mathrm{erfc}(-x/\sqrt{2})`
      (erfc keeps the negative tail accurate, unlike :math:`1 + \mathrm{erf}`).
    * ``approximate=True``: :math:`\tfrac{x}{2}(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))`
      (Hendrycks & Gimpel 2016), evaluated as :math:`x\,\sigma(2u)` (no cancellation in the
      negative tail) on a clipped cubic, so that :math:`x^3` never overflows.

    Defaults differ between libraries: `keras.activations.gelu` and `torch.nn.GELU` are exact by
    default (PyTorch's flag is ``approximate="tanh"``), while `jax.nn.gelu` and `keras.ops.gelu`
    default to the tanh approximation (the two differ by up to ~5e-4). `jax.nn.gelu`'s
    approximation also has a NaN gradient for ``|x| > ~1e13`` (the cube overflows); this one
    does not.

    Args:
        x: any-shape floating array.
        approximate: use the tanh approximation.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> np.asarray(gelu(jnp.array([-1.0, 1.0]))).round(5)
        array([-0.15866,  0.84134], dtype=float32)
        >>> np.asarray(gelu(jnp.array([-1.0, 1.0]), approximate=True)).round(5)
        array([-0.15881,  0.84119], dtype=float32)

    References:
        Hendrycks & Gimpel, `Gaussian Error Linear Units (GELUs)
        <https://arxiv.org/abs/1606.08415>`_, 2016
    """
    x = _float(x)
    if approximate:
        xc = jnp.clip(x, -_GELU_TANH_CLIP, _GELU_TANH_CLIP)
        k = np.sqrt(2.0 / np.pi).astype(x.dtype)
        inner = k * (xc + jnp.asarray(0.044715, x.dtype) * xc**3)
        # ½(1 + tanh(u)) = σ(2u): the same function without 1 + tanh's cancellation for x < 0.
        return x * jax.nn.sigmoid(2.0 * inner)
    return 0.5 * x * lax.erfc(-x * np.sqrt(0.5).astype(x.dtype))


def silu(x: jax.typing.ArrayLike) -> jax.Array:
    r"""Sigmoid linear unit (Swish with :math:`\beta = 1`): :math:`x\,\sigma(x)`.

    Used by EfficientNet. Same as `jax.nn.silu`, `keras.activations.silu` (alias ``swish``),
    `torch.nn.SiLU`.

    Args:
        x: any-shape floating array.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> np.asarray(silu(jnp.array([0.0, 1.0]))).round(4)
        array([0.    , 0.7311], dtype=float32)

    References:
        Ramachandran, Zoph & Le, `Searching for Activation Functions
        <https://arxiv.org/abs/1710.05941>`_, 2017
    """
    x = _float(x)
    return x * jax.nn.sigmoid(x)


swish = silu  # Keras' and the EfficientNet paper's name.


def softplus(x: jax.typing.ArrayLike) -> jax.Array:
    r"""Softplus, :math:`\log(1 + e^x)`, a smooth ReLU; its derivative is :math:`\sigma(x)`.

    Computed as ``logaddexp(x, 0)``: exact for large ``|x|`` without overflow. Same as
    `jax.nn.softplus`, `keras.activations.softplus`; `torch.nn.Softplus` switches to the identity
    above a ``threshold=20`` (a difference below float32 resolution).

    Args:
        x: any-shape floating array.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> softplus(jnp.array([0.0, 100.0]))
        Array([  0.6931472, 100.       ], dtype=float32)
    """
    return jnp.logaddexp(_float(x), 0)


def relu6(x: jax.typing.ArrayLike) -> jax.Array:
    r"""ReLU capped at 6, :math:`\min(\max(0, x), 6)` (MobileNet, EfficientNet-Lite).

    Derivative 1 on (0, 6), 0 elsewhere, including both kinks (as `jax.nn.relu6`). Same as
    `keras.activations.relu6`, `torch.nn.ReLU6`.

    Args:
        x: any-shape floating array.

    Returns:
        Array of the shape and dtype of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> relu6(jnp.array([-1.0, 3.0, 9.0]))
        Array([0., 3., 6.], dtype=float32)

    References:
        Howard et al., `MobileNets <https://arxiv.org/abs/1704.04861>`_, 2017
    """
    return jax.nn.relu6(_float(x))


def linear(x: jax.typing.ArrayLike) -> jax.Array:
    """Identity, the "None" (linear) last-layer activation for regression.

    Args:
        x: any-shape array.

    Returns:
        ``x`` as a JAX array.

    Examples:
        >>> import jax.numpy as jnp
        >>> linear(jnp.array([-1.0, 2.0]))
        Array([-1.,  2.], dtype=float32)
    """
    return jnp.asarray(x)


def softmax(x: jax.typing.ArrayLike, axis: int = -1) -> jax.Array:
    r"""Softmax along ``axis``: :math:`p_j = e^{x_j} / \sum_k e^{x_k}`, shifted by the max for
    stability.

    The multiclass last-layer activation. Invariant to adding a constant along ``axis``. Same as
    `jax.nn.softmax`, `keras.activations.softmax`, `torch.softmax(x, dim)`.

    Args:
        x: floating array ``[..., K]`` (or with the class axis elsewhere).
        axis: class axis.

    Returns:
        Probabilities of the shape of ``x``, summing to 1 along ``axis``.

    Examples:
        >>> import jax.numpy as jnp
        >>> softmax(jnp.array([1.0, 1.0]))
        Array([0.5, 0.5], dtype=float32)
    """
    return jax.nn.softmax(_float(x), axis=axis)


def log_softmax(x: jax.typing.ArrayLike, axis: int = -1) -> jax.Array:
    r"""Log of the softmax along ``axis``: :math:`x_j - \log\sum_k e^{x_k}` (log-sum-exp).

    What cross-entropy from logits uses. Its value leaves float32 only when the exact result
    does (a row spanning more than float32's range). Same as `jax.nn.log_softmax`,
    `keras.activations.log_softmax`, `torch.log_softmax`.

    Args:
        x: floating array ``[..., K]``.
        axis: class axis.

    Returns:
        Log-probabilities of the shape of ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> log_softmax(jnp.array([0.0, 0.0]))
        Array([-0.6931472, -0.6931472], dtype=float32)
    """
    return jax.nn.log_softmax(_float(x), axis=axis)


def maxout(x: jax.typing.ArrayLike, pieces: int = 2, *, axis: int = -1) -> jax.Array:
    r"""Maxout: split ``axis`` into contiguous groups of ``pieces`` entries and keep each
    group's max.

    The slide's :math:`\max(w_1^\top x + b_1, w_2^\top x + b_2)` is ``maxout(z, 2)`` applied to
    the stacked pre-activations ``z = [w_1ᵀx + b_1, w_2ᵀx + b_2]`` (see `fnn.layers.Maxout`).
    Output unit :math:`j` is :math:`\max_{i < k} z_{jk + i}` with :math:`k` = ``pieces``: groups
    are contiguous, so an axis of length :math:`C` gives :math:`C / k` units. TensorFlow Addons'
    ``Maxout(num_units)`` makes the same contiguous groups, counted by units (:math:`C/k`)
    instead of pieces; ``torch`` and Keras 3 have no maxout. At ties the gradient is shared as
    `jnp.max` shares it.

    Args:
        x: floating array whose ``axis`` has length :math:`C` divisible by ``pieces``.
        pieces: group size :math:`k \ge 1`.
        axis: the feature axis to group.

    Returns:
        Array of the shape of ``x`` with ``axis`` of length :math:`C / k`.

    Raises:
        ValueError: ``pieces`` < 1, ``axis`` out of range, or :math:`C` not divisible by ``pieces``.

    Examples:
        >>> import jax.numpy as jnp
        >>> maxout(jnp.array([1.0, 5.0, -2.0, -3.0]), 2)
        Array([ 5., -2.], dtype=float32)

    References:
        Goodfellow et al., `Maxout Networks <https://arxiv.org/abs/1302.4389>`_, ICML 2013
    """
    x = _float(x)
    if isinstance(pieces, bool) or not isinstance(pieces, int | np.integer) or pieces < 1:
        raise ValueError(f"maxout: pieces must be an integer >= 1, got {pieces!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"maxout: axis={axis} is out of range for x of shape {x.shape}")
    axis = axis % x.ndim
    length = x.shape[axis]
    if length % pieces:
        raise ValueError(
            f"maxout: axis {axis} of x (shape {x.shape}) has length {length}, which is not "
            f"divisible by pieces={pieces}"
        )
    grouped = x.reshape(x.shape[:axis] + (length // pieces, pieces) + x.shape[axis + 1 :])
    return jnp.max(grouped, axis=axis + 1)


_ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "silu": silu,
    "swish": silu,
    "softplus": softplus,
    "relu6": relu6,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "maxout": maxout,
    "linear": linear,
}


def get(name: str | Callable | None) -> Callable:
    """Look up an activation by its Keras identifier, or pass a callable through.

    Names are case-insensitive: ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu``, ``elu``, ``selu``,
    ``gelu``, ``silu`` (alias ``swish``), ``softplus``, ``relu6``, ``softmax``, ``log_softmax``,
    ``maxout``, ``linear``. ``None`` means linear, as in ``keras.activations.get(None)``.

    Args:
        name: identifier string, ``None``, or a callable (returned unchanged).

    Returns:
        The activation function.

    Raises:
        ValueError: unknown name, with a "did you mean" suggestion.
        TypeError: neither a string, ``None`` nor a callable.

    Examples:
        >>> get("relu") is relu
        True
        >>> get("swish") is silu
        True
    """
    if name is None:
        return linear
    if callable(name):
        return name
    return lookup("activation", name, _ACTIVATIONS)
