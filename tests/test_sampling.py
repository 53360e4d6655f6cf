"""Samplers (apls._core.Sampler) against hand-computed distributions and NumPy references."""

import math

import numpy as np
import pytest

import apls
from apls import _core

try:
    from scipy import stats
except ImportError:  # pragma: no cover - exercised only where scipy is missing
    stats = None

P4 = np.array([0.1, 0.2, 0.3, 0.4])


def logits_of(p):
    return np.log(np.asarray(p, dtype=np.float64)).astype(np.float32)


def chain_probs(stages, logits=None):
    """probs() of a chain ending in dist, on log(P4) unless given other logits."""
    s = _core.Sampler.chain(list(stages) + [("dist", 0)])
    return s.probs(logits_of(P4) if logits is None else logits)


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


# ---- single stages on probs [0.1, 0.2, 0.3, 0.4] (expected values by hand) ----------------------


@pytest.mark.parametrize(
    "k, expected",
    [
        (1, [0, 0, 0, 1]),
        (2, [0, 0, 3 / 7, 4 / 7]),
        (3, [0, 2 / 9, 3 / 9, 4 / 9]),
        (4, [0.1, 0.2, 0.3, 0.4]),
        (5, [0.1, 0.2, 0.3, 0.4]),
        (0, [0.1, 0.2, 0.3, 0.4]),  # 0 = off
    ],
)
def test_top_k(k, expected):
    np.testing.assert_allclose(chain_probs([("top_k", k)]), expected, rtol=1e-6, atol=1e-7)


# Sorted descending the cumulative sums are 0.4, 0.7, 0.9, 1.0; p values sit between them so the
# kept set does not depend on rounding.
@pytest.mark.parametrize(
    "p, expected",
    [
        (0.05, [0, 0, 0, 1]),
        (0.3, [0, 0, 0, 1]),
        (0.5, [0, 0, 3 / 7, 4 / 7]),
        (0.8, [0, 2 / 9, 3 / 9, 4 / 9]),
        (0.95, [0.1, 0.2, 0.3, 0.4]),
        (1.0, [0.1, 0.2, 0.3, 0.4]),
    ],
)
def test_top_p(p, expected):
    np.testing.assert_allclose(chain_probs([("top_p", p)]), expected, rtol=1e-6, atol=1e-7)


def test_top_p_min_keep():
    np.testing.assert_allclose(chain_probs([("top_p", 0.3, 3)]), [0, 2 / 9, 3 / 9, 4 / 9], rtol=1e-6, atol=1e-7)


# p_max = 0.4; thresholds min_p * 0.4 chosen away from 0.1, 0.2, 0.3.
@pytest.mark.parametrize(
    "min_p, expected",
    [
        (0.0, [0.1, 0.2, 0.3, 0.4]),
        (0.1, [0.1, 0.2, 0.3, 0.4]),  # keep p >= 0.04
        (0.3, [0, 2 / 9, 3 / 9, 4 / 9]),  # keep p >= 0.12
        (0.6, [0, 0, 3 / 7, 4 / 7]),  # keep p >= 0.24
        (0.9, [0, 0, 0, 1]),  # keep p >= 0.36
        (1.0, [0, 0, 0, 1]),
    ],
)
def test_min_p(min_p, expected):
    np.testing.assert_allclose(chain_probs([("min_p", min_p)]), expected, rtol=1e-6, atol=1e-7)


def test_min_p_min_keep():
    np.testing.assert_allclose(chain_probs([("min_p", 0.9, 2)]), [0, 0, 3 / 7, 4 / 7], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "t, expected",
    [
        (1.0, P4),
        (0.5, P4**2 / np.sum(P4**2)),  # softmax(log p / 0.5) = p^2 / sum p^2
        (2.0, np.sqrt(P4) / np.sum(np.sqrt(P4))),
        (0.0, [0, 0, 0, 1]),  # T <= 0: greedy
        (-1.0, [0, 0, 0, 1]),
    ],
)
def test_temperature(t, expected):
    np.testing.assert_allclose(chain_probs([("temperature", t)]), expected, rtol=1e-5, atol=1e-7)


def test_stages_compose_in_order():
    # top_k 3 keeps {0.2, 0.3, 0.4} -> {2/9, 3/9, 4/9}; top_p 0.6 then keeps {4/9, 3/9} (cum 7/9);
    # temperature 0.5 squares and renormalises: {9, 16} / 25.
    got = chain_probs([("top_k", 3), ("top_p", 0.6), ("temperature", 0.5)])
    np.testing.assert_allclose(got, [0, 0, 9 / 25, 16 / 25], rtol=1e-5, atol=1e-7)


def test_penalties_by_hand():
    logits = np.array([1.0, -1.0, 2.0, 0.5], dtype=np.float32)
    s = _core.Sampler.chain([("penalties", 64, 2.0, 0.5, 0.25), ("dist", 0)])
    for t in (0, 1, 0):
        s.accept(t)
    # token 0 (count 2): 1.0 / 2 - 2 * 0.5 - 0.25 = -0.75
    # token 1 (count 1): -1.0 * 2 - 1 * 0.5 - 0.25 = -2.75; tokens 2, 3 unchanged
    np.testing.assert_allclose(s.probs(logits), softmax([-0.75, -2.75, 2.0, 0.5]), rtol=1e-6)
    s.reset()  # history gone: no penalty
    np.testing.assert_allclose(s.probs(logits), softmax(logits), rtol=1e-6)


def test_penalty_window_is_last_n():
    logits = np.array([1.0, 1.0, 1.0], dtype=np.float32)
    s = _core.Sampler.chain([("penalties", 2, 1.0, 0.0, 1.0), ("dist", 0)])
    for t in (0, 1, 1):  # window of 2: [1, 1]; token 0 has left it
        s.accept(t)
    np.testing.assert_allclose(s.probs(logits), softmax([1.0, 0.0, 1.0]), rtol=1e-6)


def test_repeat_penalty_alone_divides_positive_multiplies_negative():
    logits = np.array([2.0, -2.0, 0.0, 1.0], dtype=np.float32)
    s = _core.Sampler.chain([("penalties", 8, 1.25), ("greedy",)])
    for t in (0, 1, 2):
        s.accept(t)
    s2 = _core.Sampler.chain([("penalties", 8, 1.25), ("dist", 0)])
    for t in (0, 1, 2):
        s2.accept(t)
    np.testing.assert_allclose(s2.probs(logits), softmax([1.6, -2.5, 0.0, 1.0]), rtol=1e-6)
    assert s.sample(logits) == 0  # 1.6 still beats 1.0


# ---- selectors -----------------------------------------------------------------------------------


def test_greedy_is_argmax():
    rng = np.random.default_rng(0)
    s = _core.Sampler.chain([("greedy",)])
    for _ in range(50):
        row = rng.standard_normal(1000).astype(np.float32)
        assert s.sample(row) == int(np.argmax(row))
        p = s.probs(row)
        assert p[np.argmax(row)] == 1.0 and p.sum() == 1.0


def test_greedy_ties_go_to_lowest_id():
    s = _core.Sampler.chain(["greedy"])
    assert s.sample(np.array([0.0, 3.0, 1.0, 3.0], dtype=np.float32)) == 1
    t0 = _core.Sampler(temperature=0.0)  # standard chain at T = 0 is greedy
    assert t0.sample(np.array([0.0, 3.0, 1.0, 3.0], dtype=np.float32)) == 1


def test_greedy_standard_chain_is_the_penalised_argmax():
    """At temperature 0 the standard chain (penalties, top-k, top-p, min-p, temperature) picks
    the argmax of the penalised logits, ties to the lowest id (NumPy reference; the sampler
    skips the filters, which never remove the top candidate): full vocabulary, repeated values."""
    rng = np.random.default_rng(3)
    s = _core.Sampler(
        temperature=0.0,
        top_k=40,
        top_p=0.9,
        min_p=0.05,
        repeat_penalty=1.3,
        frequency_penalty=0.2,
        presence_penalty=0.1,
        penalty_last_n=16,
    )
    history = []
    for _ in range(200):
        row = np.round(rng.standard_normal(49152) * 4, 1).astype(np.float32)  # many ties
        ref = row.copy()
        window = history[-16:]
        f32 = np.float32
        for t in set(window):  # llama.cpp's penalties, in float32 as the engine computes them
            x = ref[t] / f32(1.3) if ref[t] > 0 else ref[t] * f32(1.3)
            ref[t] = x - (f32(window.count(t)) * f32(0.2) + f32(0.1))
        want = int(np.flatnonzero(ref == ref.max())[0])
        got = s.sample(row)
        assert got == want
        s.accept(got)
        history.append(got)


def draws(sampler, logits, n):
    return [sampler.sample(logits) for _ in range(n)]


def test_seeded_runs_are_reproducible():
    row = np.linspace(-1, 1, 50, dtype=np.float32)
    a = draws(_core.Sampler(seed=1234, top_k=0, top_p=1.0, min_p=0.0, temperature=1.0), row, 200)
    b = draws(_core.Sampler(seed=1234, top_k=0, top_p=1.0, min_p=0.0, temperature=1.0), row, 200)
    c = draws(_core.Sampler(seed=1235, top_k=0, top_p=1.0, min_p=0.0, temperature=1.0), row, 200)
    assert a == b
    assert a != c


def test_reset_reseeds_and_probs_does_not_advance():
    row = np.linspace(-1, 1, 50, dtype=np.float32)
    s = _core.Sampler.chain([("dist", 99)])
    a = draws(s, row, 100)
    s.reset()
    b = []
    for _ in range(100):
        s.probs(row)  # must not consume random numbers
        b.append(s.sample(row))
    assert a == b


def check_matches(counts, expected_p, n):
    """Chi-square goodness of fit (scipy), else a 5-sigma bound on every bin."""
    expected_p = np.asarray(expected_p, dtype=np.float64)
    expected = expected_p / expected_p.sum() * n  # float32 probs sum to 1 only within rounding
    if stats is not None:
        # bins with tiny expectation are pooled, as the chi-square approximation needs ~5 per bin
        small = expected < 5
        obs = np.append(counts[~small], counts[small].sum())
        exp = np.append(expected[~small], expected[small].sum())
        if exp[-1] == 0:
            obs, exp = obs[:-1], exp[:-1]
        _, pvalue = stats.chisquare(obs, exp)
        assert pvalue > 1e-4, f"chi-square p-value {pvalue}"  # fixed seed: deterministic
    else:
        sigma = np.sqrt(n * expected_p * (1 - expected_p))
        assert np.all(np.abs(counts - expected) <= 5 * sigma + 1), (counts, expected)


def test_dist_matches_probs_small():
    logits = np.array([0.5, -1.0, 2.0, 1.5, 0.0, -3.0], dtype=np.float32)
    s = _core.Sampler.chain([("top_k", 4), ("temperature", 0.9), ("dist", 123)])
    p = s.probs(logits).astype(np.float64)
    kept = [2, 3, 0, 4]  # the 4 highest logits
    ref = np.zeros(6)
    ref[kept] = softmax(logits[kept] / 0.9)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-7)
    n = 100_000
    counts = np.bincount(draws(s, logits, n), minlength=6)
    assert counts[1] == 0 and counts[5] == 0  # removed tokens are never drawn
    check_matches(counts, p, n)


def ref_standard(logits, top_k, top_p, min_p, temp):
    """NumPy reference of penalties-free top_k -> top_p -> min_p -> temperature -> softmax."""
    l = logits.astype(np.float64)
    order = np.lexsort((np.arange(len(l)), -l))  # descending logit, ties by id
    keep = order[:top_k] if top_k > 0 else order
    cum = np.cumsum(softmax(l[keep]))
    keep = keep[: int(np.searchsorted(cum, top_p)) + 1] if top_p < 1 else keep
    p = softmax(l[keep])
    keep = keep[p >= min_p * p.max()]
    out = np.zeros(len(l))
    out[keep] = softmax(l[keep] / temp)
    return out


def test_standard_chain_matches_numpy_on_a_full_vocabulary():
    rng = np.random.default_rng(7)
    row = (rng.standard_normal(49152) * 3).astype(np.float32)
    s = _core.Sampler(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=5)
    p = s.probs(row)
    ref = ref_standard(row, 40, 0.95, 0.05, 0.8)
    assert p.shape == (49152,) and p.dtype == np.float32
    assert set(np.flatnonzero(p)) == set(np.flatnonzero(ref))
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-7)
    n = 20_000
    counts = np.bincount(draws(s, row, n), minlength=49152)
    assert counts[ref == 0].sum() == 0
    check_matches(counts[ref > 0], ref[ref > 0], n)


@pytest.mark.parametrize("p", [0.001, 0.5, 0.9, 0.999])
def test_top_p_without_top_k_on_a_full_vocabulary(p):
    rng = np.random.default_rng(3)
    row = (rng.standard_normal(49152) * 4).astype(np.float32)
    got = chain_probs([("top_p", p)], row)
    ref = ref_standard(row, 0, p, 0.0, 1.0)
    assert set(np.flatnonzero(got)) == set(np.flatnonzero(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_top_p_min_keep_on_a_full_vocabulary():
    rng = np.random.default_rng(4)
    row = (rng.standard_normal(49152) * 4).astype(np.float32)
    got = chain_probs([("top_p", 0.001, 100)], row)
    ref = ref_standard(row, 100, 1.0, 0.0, 1.0)  # min_keep wins: the 100 best
    assert set(np.flatnonzero(got)) == set(np.flatnonzero(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_repr_names_the_chain():
    s = _core.Sampler.chain([("top_k", 40), ("temperature", 0.7), ("dist", 1234)])
    assert repr(s) == "<Sampler top_k(40) -> temperature(0.7) -> dist(seed=1234)>"


# ---- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"top_p": math.nan}, "top_p"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"min_p": -0.1}, r"min_p must be in \[0, 1\]"),
        ({"min_p": 1.1}, r"min_p must be in \[0, 1\]"),
        ({"temperature": math.inf}, "temperature must be finite"),
        ({"repeat_penalty": 0.0}, "repeat_penalty"),
        ({"penalty_last_n": -1}, "penalty_last_n"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(apls.InvalidArgumentError, match=match):
        _core.Sampler(**kwargs)


def test_invalid_argument_error_is_a_value_error():
    assert issubclass(apls.InvalidArgumentError, ValueError)


def test_bad_logits():
    s = _core.Sampler(seed=1)
    with pytest.raises(apls.InvalidArgumentError, match=r"logits\[2\] is NaN"):
        s.sample(np.array([0.0, 1.0, np.nan], dtype=np.float32))
    with pytest.raises(apls.InvalidArgumentError, match="n_vocab must be > 0"):
        s.sample(np.zeros(0, dtype=np.float32))
    with pytest.raises(apls.InvalidArgumentError, match="1-D"):
        s.probs(np.zeros((2, 3), dtype=np.float32))
    s.sample(np.zeros(8, dtype=np.float32))
    with pytest.raises(apls.InvalidArgumentError, match="n_vocab 9 does not match the sampler's n_vocab 8"):
        s.probs(np.zeros(9, dtype=np.float32))
    with pytest.raises(apls.InvalidArgumentError, match=r"token 8 out of range \[0, 8\)"):
        s.accept(8)


def test_bad_chains():
    with pytest.raises(apls.InvalidArgumentError, match="unknown sampler stage 'top_q'"):
        _core.Sampler.chain([("top_q", 0.5)])
    with pytest.raises(apls.InvalidArgumentError, match="already ends with a selector"):
        _core.Sampler.chain([("greedy",), ("top_k", 3)])
    with pytest.raises(apls.InvalidArgumentError, match="takes at most 1 arguments"):
        _core.Sampler.chain([("top_k", 3, 4)])
    with pytest.raises(apls.InvalidArgumentError, match="needs argument 1"):
        _core.Sampler.chain([("temperature",)])
    with pytest.raises(apls.InvalidArgumentError, match="wrong type"):
        _core.Sampler.chain([("top_k", "forty")])
    s = _core.Sampler.chain([("top_k", 3)])
    with pytest.raises(apls.InvalidArgumentError, match="no selector"):
        s.sample(np.zeros(4, dtype=np.float32))
