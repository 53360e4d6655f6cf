"""The server's per-request drafts (apls.server.drafter.TextDrafter over the engine's drafter):
every chain it proposes continues an earlier occurrence of the text's last tokens (checked by
brute force over random repetitive token strings), it indexes the text as it grows, and bad
input is refused by name."""

import numpy as np
import pytest

import apls
from apls.server.drafter import TextDrafter


@pytest.fixture(scope="module")
def model(smollm2_path):
    return apls.Model(smollm2_path, device="cpu")


def continues_an_earlier_occurrence(text, chain):
    """Brute force: some earlier position j where the text's last token occurs again (the
    text's suffix of length >= 1 ends at j) is followed by `chain` in the text."""
    n = len(text)
    for j in range(1, n):  # text[j - 1] == text[-1], j < n: an earlier occurrence
        if text[j - 1] == text[-1] and text[j : j + len(chain)] == chain:
            return True
    return False


@pytest.mark.parametrize("sources", [("lookup",), ("suffix",), ("lookup", "suffix")])
def test_chains_continue_the_text(model, sources):
    rng = np.random.default_rng(7)
    n_hits = 0
    for _trial in range(30):
        alphabet = rng.integers(0, model.n_vocab, 6)
        text = [int(t) for t in rng.choice(alphabet, 40)]  # small alphabet: the text repeats itself
        d = TextDrafter(model, sources)
        for end in range(5, len(text) + 1, 5):  # the text grows between calls
            k = int(rng.integers(1, 9))
            chain = d.propose(text[:end], k)
            assert len(chain) <= k
            if chain:
                n_hits += 1
                assert continues_an_earlier_occurrence(text[:end], chain), (text[:end], chain)
    assert n_hits > 50  # a repetitive text is drafted from most of the time


def test_lookup_follows_the_repeated_ngram(model):
    d = TextDrafter(model, ("lookup",))
    text = [11, 12, 13, 14, 15, 16, 90, 91, 11, 12, 13]
    assert d.propose(text, 3) == [14, 15, 16]
    assert d.propose(text, 0) == []
    assert d.propose(text + [14], 2) == [15, 16]  # only the new token is indexed


def test_bad_input(model):
    with pytest.raises(ValueError, match="sources"):
        TextDrafter(model, ("skip",))
    with pytest.raises(ValueError, match="sources"):
        TextDrafter(model, ("nope",))
    d = TextDrafter(model)
    d.propose([1, 2, 3, 1, 2], 2)
    with pytest.raises(ValueError, match="shrank"):
        d.propose([1, 2], 2)
    with pytest.raises(ValueError, match="out of range|n_vocab"):
        TextDrafter(model).propose([model.n_vocab], 2)
