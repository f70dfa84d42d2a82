"""Minibatches: coverage per epoch, reshuffling, seeds, drop_last, len, devices, errors."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.backend as backend
from minigan.data import Minibatches, ToySampler, infinite, ring8


BACKENDS = ["numpy", "cupy"]


def _skip_without(name):
    if name == "cupy" and not backend.cupy_available():
        pytest.skip("CuPy with a visible GPU is not available on this machine")


def _ids(n):
    """Data whose rows carry their own index: row i of x is [i, -i], y[i] = i."""
    x = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)
    y = np.arange(n, dtype=np.int64)
    return x, y


def _epoch_indices(batches):
    return [backend.to_numpy(b[1]).tolist() for b in batches]


# ----------------------------------------------------------------- coverage


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), data=st.data(), drop_last=st.booleans(),
       shuffle=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_every_index_once_per_epoch(n, data, drop_last, shuffle, seed):
    batch_size = data.draw(st.integers(1, n if drop_last else n + 5), label="batch_size")
    x, y = _ids(n)
    mb = Minibatches(x, y, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                     rng=seed, backend="numpy")
    full, rest = divmod(n, batch_size)
    assert len(mb) == (full if drop_last else full + (rest > 0))
    for _ in range(2):
        batches = list(mb)
        assert len(batches) == len(mb)
        seen = np.concatenate([b[1] for b in batches])
        # rows stay together: x's row is the one y names
        for bx, by in batches:
            np.testing.assert_array_equal(bx[:, 0], by)
            np.testing.assert_array_equal(bx[:, 1], -by)
        sizes = [len(b[1]) for b in batches]
        assert all(s == batch_size for s in sizes[:full])
        if drop_last:
            assert len(seen) == full * batch_size
            assert len(np.unique(seen)) == len(seen)  # no repeats
            if not shuffle:
                np.testing.assert_array_equal(seen, np.arange(full * batch_size))
        else:
            np.testing.assert_array_equal(np.sort(seen), np.arange(n))  # each exactly once
            if rest:
                assert sizes[-1] == rest
            if not shuffle:
                np.testing.assert_array_equal(seen, np.arange(n))


def test_drop_last_drops_only_the_short_batch():
    x, y = _ids(10)
    kept = Minibatches(x, y, batch_size=4, shuffle=False, drop_last=True)
    assert len(kept) == 2
    assert _epoch_indices(kept) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    full = Minibatches(x, y, batch_size=4, shuffle=False, drop_last=False)
    assert len(full) == 3
    assert _epoch_indices(full) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_shuffled_drop_last_covers_different_samples_each_epoch():
    x, y = _ids(10)
    mb = Minibatches(x, y, batch_size=4, rng=0)
    dropped = {frozenset(range(10)) - frozenset(sum(_epoch_indices(mb), [])) for _ in range(20)}
    assert len(dropped) > 1  # the left-out pair changes between epochs


# ----------------------------------------------------------------- shuffling


def test_epochs_differ_and_are_permutations():
    x, y = _ids(1000)
    mb = Minibatches(x, y, batch_size=100, rng=1)
    e1 = np.concatenate(_epoch_indices(mb))
    e2 = np.concatenate(_epoch_indices(mb))
    assert not np.array_equal(e1, e2)
    assert not np.array_equal(e1, np.arange(1000))  # actually shuffled
    np.testing.assert_array_equal(np.sort(e1), np.arange(1000))
    np.testing.assert_array_equal(np.sort(e2), np.arange(1000))
    assert mb.epoch == 2


def test_seed_repeats_the_whole_sequence_of_epochs():
    x, y = _ids(50)
    a = Minibatches(x, y, batch_size=7, rng=42)
    b = Minibatches(x, y, batch_size=7, rng=np.random.default_rng(42))
    for _ in range(3):
        assert _epoch_indices(a) == _epoch_indices(b)
    c = Minibatches(x, y, batch_size=7, rng=43)
    assert _epoch_indices(Minibatches(x, y, batch_size=7, rng=42)) != _epoch_indices(c)


def test_epoch_order_is_the_generators_permutation():
    """The order of an epoch is exactly rng.permutation(N) from the given seed."""
    x, y = _ids(30)
    mb = Minibatches(x, y, batch_size=10, rng=5)
    ref = np.random.default_rng(5)
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate(_epoch_indices(mb)), ref.permutation(30))


def test_rng_none_follows_minigan_seed():
    x, y = _ids(40)
    backend.seed(9)
    a = _epoch_indices(Minibatches(x, y, batch_size=8))
    backend.seed(9)
    b = _epoch_indices(Minibatches(x, y, batch_size=8))
    assert a == b


def test_no_shuffle_is_in_order_and_deterministic():
    x, y = _ids(9)
    mb = Minibatches(x, y, batch_size=3, shuffle=False)
    assert _epoch_indices(mb) == _epoch_indices(mb) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


# --------------------------------------------------------------- batch types


def test_single_array_gives_arrays_not_tuples():
    x, _ = _ids(12)
    mb = Minibatches(x, batch_size=5, rng=0)
    batches = list(mb)
    assert len(batches) == 2
    for b in batches:
        assert isinstance(b, np.ndarray)
        assert b.shape == (5, 2) and b.dtype == np.float32


def test_three_arrays_and_dtypes_kept():
    x, y = _ids(8)
    w = np.linspace(0, 1, 8)  # float64 stays float64
    (bx, by, bw), = list(Minibatches(x, y, w, batch_size=8, rng=0))
    assert (bx.dtype, by.dtype, bw.dtype) == (np.float32, np.int64, np.float64)
    np.testing.assert_allclose(bw, by / 7.0)


@pytest.mark.parametrize("name", BACKENDS)
def test_data_moved_to_the_device_once(name, monkeypatch):
    _skip_without(name)
    import minigan.data.batches as batches_module

    calls = []
    real = batches_module.to_device
    monkeypatch.setattr(batches_module, "to_device",
                        lambda a, b=None: calls.append(b) or real(a, b))
    x, y = _ids(64)
    mb = Minibatches(x, y, batch_size=16, rng=0, backend=name)
    assert calls == [name, name]  # one move per array, at construction
    assert [backend.backend_of(a) for a in mb.arrays] == [name, name]
    for _ in range(3):
        for bx, by in mb:
            assert backend.backend_of(bx) == name and backend.backend_of(by) == name
    assert len(calls) == 2  # and never again
    bx, by = next(iter(mb))
    np.testing.assert_array_equal(backend.to_numpy(bx)[:, 0], backend.to_numpy(by))


@pytest.mark.parametrize("name", BACKENDS)
def test_same_seed_same_batches_on_every_backend(name):
    _skip_without(name)
    x, y = _ids(33)
    ref = _epoch_indices(Minibatches(x, y, batch_size=4, rng=3, backend="numpy"))
    assert _epoch_indices(Minibatches(x, y, batch_size=4, rng=3, backend=name)) == ref


def test_lists_are_accepted():
    mb = Minibatches([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], batch_size=3, shuffle=False)
    np.testing.assert_array_equal(next(iter(mb)), [[1, 2], [3, 4], [5, 6]])


# ------------------------------------------------------------- step-based loops


def test_forever_cycles_epochs_with_fresh_permutations():
    x, y = _ids(10)
    mb = Minibatches(x, y, batch_size=5, rng=0)
    batches = list(itertools.islice(mb.forever(), 6))  # 3 epochs of 2 batches
    epochs = [np.concatenate([b[1] for b in batches[i:i + 2]]) for i in (0, 2, 4)]
    for e in epochs:
        np.testing.assert_array_equal(np.sort(e), np.arange(10))
    assert not (np.array_equal(epochs[0], epochs[1]) and np.array_equal(epochs[1], epochs[2]))
    ref = Minibatches(x, y, batch_size=5, rng=0)
    np.testing.assert_array_equal(epochs[0], np.concatenate(_epoch_indices(ref)))
    np.testing.assert_array_equal(epochs[1], np.concatenate(_epoch_indices(ref)))


def test_infinite_on_any_reiterable_and_refuses_empty():
    assert list(itertools.islice(infinite([1, 2, 3]), 7)) == [1, 2, 3, 1, 2, 3, 1]
    with pytest.raises(ValueError, match="yielded no batches"):
        next(infinite([]))
    once = iter([1, 2])  # a one-shot iterator is empty on the second pass
    gen = infinite(once)
    assert [next(gen), next(gen)] == [1, 2]
    with pytest.raises(ValueError, match="yielded no batches"):
        next(gen)


# ------------------------------------------------------------------ resuming


def _json_roundtrip(state):
    import json

    return json.loads(json.dumps(state))  # what a checkpoint does to it


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), data=st.data(), drop_last=st.booleans(),
       shuffle=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_state_dict_resumes_exactly_anywhere(n, data, drop_last, shuffle, seed):
    """Stop after any number of batches (mid-epoch, at an epoch's end, before the
    first), restore into a fresh Minibatches: the same batches follow, forever."""
    batch_size = data.draw(st.integers(1, n), label="batch_size")
    x, y = _ids(n)
    make = lambda rng: Minibatches(x, y, batch_size=batch_size, shuffle=shuffle,  # noqa: E731
                                   drop_last=drop_last, rng=rng, backend="numpy")
    first = data.draw(st.integers(0, 3 * len(make(0))), label="batches before the state")
    mb = make(seed)
    stream = mb.forever()
    _ = [next(stream) for _ in range(first)]
    state = _json_roundtrip(mb.state_dict())
    expected = [next(stream)[1].tolist() for _ in range(2 * len(mb) + 1)]
    resumed = make(12345)  # another seed: everything comes from the state
    resumed.load_state_dict(state)
    stream = resumed.forever()
    assert [next(stream)[1].tolist() for _ in expected] == expected
    assert resumed.epoch == mb.epoch


def test_load_state_dict_continues_the_epoch_in_a_for_loop():
    x, y = _ids(10)
    mb = Minibatches(x, y, batch_size=2, rng=3)
    it = iter(mb)
    head = [next(it)[1].tolist() for _ in range(2)]
    state = mb.state_dict()
    rest = [b[1].tolist() for b in it]
    again = Minibatches(x, y, batch_size=2, rng=0)
    again.load_state_dict(state)
    assert [b[1].tolist() for b in again] == rest          # the rest of that epoch
    assert sorted(sum(head + rest, [])) == list(range(10))
    assert state["epoch"] == again.epoch == 1
    next_epoch = [b[1].tolist() for b in again]             # then a new one, as mb's would be
    assert next_epoch == [b[1].tolist() for b in mb]


def test_state_of_other_data_is_refused():
    state = Minibatches(np.zeros((10, 2)), batch_size=5).state_dict()
    with pytest.raises(ValueError, match="10 samples in batches of 5.*12 samples"):
        Minibatches(np.zeros((12, 2)), batch_size=5).load_state_dict(state)


def test_toy_sampler_is_endless_and_resumable():
    sampler = ToySampler(ring8(), batch_size=16, rng=0, backend="numpy")
    assert iter(sampler) is sampler
    first = next(sampler)
    assert first.shape == (16, 2) and first.dtype == np.float32
    state = _json_roundtrip(sampler.state_dict())
    expected = [next(sampler) for _ in range(3)]
    other = ToySampler(ring8(), batch_size=16, rng=99, backend="numpy")
    other.load_state_dict(state)
    for a, b in zip(expected, [next(other) for _ in range(3)]):
        np.testing.assert_array_equal(a, b)
    # the same draws as the dataset's own sample() with that generator
    np.testing.assert_array_equal(first, ring8().sample(16, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ToySampler(ring8(), batch_size=0)


# --------------------------------------------------------------------- errors


def test_mismatched_lengths():
    with pytest.raises(ValueError, match=r"same first dimension.*\(10, 2\), \(9,\)"):
        Minibatches(np.zeros((10, 2)), np.zeros(9), batch_size=2)


@pytest.mark.parametrize("bs, err, match", [
    (0, ValueError, "batch_size must be a positive int, got 0"),
    (-3, ValueError, "batch_size must be a positive int, got -3"),
    (2.0, TypeError, "batch_size must be a positive int, got 2.0"),
    (True, TypeError, "batch_size must be a positive int, got True"),
    (None, TypeError, "batch_size must be a positive int, got None"),
])
def test_bad_batch_size(bs, err, match):
    with pytest.raises(err, match=match):
        Minibatches(np.zeros((10, 2)), batch_size=bs)


def test_batch_larger_than_data():
    with pytest.raises(ValueError, match=r"batch_size=11 is larger than the 10 samples.*drop_last"):
        Minibatches(np.zeros((10, 2)), batch_size=11)
    # allowed without drop_last: one batch of everything
    mb = Minibatches(np.zeros((10, 2)), batch_size=11, drop_last=False)
    assert len(mb) == 1 and next(iter(mb)).shape == (10, 2)


def test_numpy_int_batch_size_ok():
    assert len(Minibatches(np.zeros((10, 2)), batch_size=np.int64(5))) == 2


def test_batch_size_is_keyword_only():
    with pytest.raises(TypeError, match="batch_size"):
        Minibatches(np.zeros((10, 2)), 5)


@pytest.mark.parametrize("arrays, match", [
    ((), "at least one array"),
    ((np.float32(1.0),), "scalar"),
    ((np.zeros((0, 3)),), "no samples"),
])
def test_bad_arrays(arrays, match):
    with pytest.raises(ValueError, match=match):
        Minibatches(*arrays, batch_size=1)


def test_unknown_backend():
    with pytest.raises(ValueError, match="Unknown backend 'torch'"):
        Minibatches(np.zeros((4, 2)), batch_size=2, backend="torch")
