"""The server's speculation model (apls.server.speculation): the decayed least-squares fit of step
time against batch tokens checked against NumPy's weighted polyfit, the draft-length rule and the
acceptance bookkeeping against hand-computed values."""

import numpy as np
import pytest

from apls.server.speculation import DraftStats, StepCost


def test_step_cost_fit_equals_weighted_least_squares():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 40, 200)
    t = 2e-3 + 1e-4 * n + rng.normal(0, 1e-5, n.size)
    c = StepCost(decay=0.97)
    for x, y in zip(n, t):
        c.observe(int(x), float(y))
    a, b = c.coefficients()
    w = 0.97 ** np.arange(n.size)[::-1]  # the newest step weighs 1, each older one decay times less
    b_ref, a_ref = np.polyfit(n, t, 1, w=np.sqrt(w))  # polyfit weights the residuals, not their squares
    assert a == pytest.approx(a_ref, rel=1e-6) and b == pytest.approx(b_ref, rel=1e-6)
    # the threshold a draft token must beat: b * n_out / t(n_batch)
    assert c.token_threshold(20, 8) == pytest.approx(b * 8 / (a + b * 20))


def test_step_cost_needs_steps_of_different_sizes():
    c = StepCost()
    assert c.coefficients() is None and c.token_threshold(16, 4) == 0.5  # even odds before any fit
    for _ in range(50):
        c.observe(8, 1e-3)
    assert c.coefficients() is None  # one size only: the slope is not identifiable
    c.observe(9, 1.1e-3)
    c.observe(1, 0.3e-3)
    assert c.coefficients() is not None


def test_step_cost_clamps_a_negative_slope():
    c = StepCost(decay=1.0)
    for x, y in [(1, 3e-3), (10, 2e-3), (20, 1e-3)]:  # noise can make a larger batch look faster
        c.observe(x, y)
    a, b = c.coefficients()
    assert b == 0.0 and a == pytest.approx(2e-3)


def test_draft_len_by_hand():
    s = DraftStats(alpha=0.8)
    # alpha^j > 0.5 for j = 1, 2, 3 (0.8, 0.64, 0.512); not 4 (0.4096)
    assert s.draft_len(0.5, 8) == 3
    assert s.draft_len(0.5, 2) == 2
    assert s.draft_len(0.9, 8) == 0
    s.idle_steps = 16  # a request whose drafts stopped paying still probes one token now and then
    assert s.draft_len(0.9, 8, probe_every=16) == 1
    assert s.draft_len(0.9, 0, probe_every=16) == 0


def test_draft_stats_record_by_hand():
    s = DraftStats(alpha=0.5)
    s.record(4, 2)  # 2 accepted of the 3 tried (the first rejection ends the step): rate 2/3
    assert s.alpha == pytest.approx(0.7 * 0.5 + 0.3 * 2 / 3)
    s.record(4, 4)  # all four accepted
    assert s.alpha == pytest.approx(0.7 * (0.7 * 0.5 + 0.3 * 2 / 3) + 0.3)
    s.record(0, 0)  # no draft: an idle step, the rate unchanged
    assert s.idle_steps == 1 and s.n_spec_steps == 2
    assert s.acceptance == pytest.approx(6 / 8)
    assert s.tau == pytest.approx((6 + 2) / 2)  # tokens per verify step, the model's own included
    assert DraftStats().tau == 0.0 and DraftStats().acceptance == 0.0
