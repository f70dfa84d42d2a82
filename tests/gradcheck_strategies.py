"""What the gradient-check tests share: hypothesis strategies for seeds and small
shapes, and the pass criterion of a check (float64, central differences)."""

from hypothesis import strategies as st

seeds = st.integers(0, 2**32 - 1)
batch = st.integers(1, 5)
width = st.integers(1, 6)


#: What central differences can resolve: rounding in f(x + eps) - f(x - eps) is
#: about 1e-16 |f| / eps = 1e-10 |f| with eps = 1e-6. A gradient whose entries are
#: all that close to the numeric ones says nothing more, even when they are so small
#: (a first layer's gradient behind batch norm of 3 samples: 4e-5) that the
#: relative error of such a difference exceeds 1e-6.
NOISE_FLOOR = 1e-9


def assert_gradcheck(result):
    assert result.ok, str(result)
    for c in result.comparisons:
        assert c.rel_error < 1e-6 or c.max_abs_error < NOISE_FLOOR, str(result)
