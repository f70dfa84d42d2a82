"""What the gradient-check tests share: hypothesis strategies for seeds and small
shapes, and the pass criterion of a check (float64, central differences)."""

from hypothesis import strategies as st

seeds = st.integers(0, 2**32 - 1)
batch = st.integers(1, 5)
width = st.integers(1, 6)


def assert_gradcheck(result):
    assert result.ok, str(result)
    assert result.max_rel_error < 1e-6, str(result)
