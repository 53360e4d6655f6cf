"""Shared by the SmolLM2 speculative tests on the CPU (test_speculative.py) and on the GPU
(test_cuda.py): chat-formatted prompt ids, plain greedy decoding as the reference, and the
draft plans both check for lossless output."""

from apls import _core
from apls.generate import generate_tokens
from apls.plan import Plan

# Draft plans over SmolLM2's 30 layers: skipped blocks, skipped attention with a truncated head,
# parallel groups, early exit.
PLANS = {
    "skip": Plan.skipping(range(10, 20), range(10, 20)),
    "skip-attn-head": Plan.skipping(range(6, 24), [], head_rows=8192),
    "groups": Plan.skipping([], [14], groups=[(8, 11), (20, 23)]),
    "early-exit": Plan.early_exit(24, 30),
}


def chat_ids(model, text):
    """Token ids of `text` as one user turn in the model's chat template."""
    return model.tokenize(model.chat_prompt([{"role": "user", "content": text}]), add_special=False, parse_special=True)


_PLAIN: dict = {}  # (file, device, prompt ids, n) -> tokens: every plan is checked against the same runs


def plain_greedy(model, ids, n):
    """n tokens of plain greedy decoding after ids (end of generation ignored). Computed once per
    (model file, device, prompt, n) in a test session: the reference does not change between the
    plans a test compares with it."""
    key = (model.path, model.device, tuple(int(t) for t in ids), n)
    if key not in _PLAIN:
        ctx = model.context(n_ctx=512)
        _PLAIN[key] = list(generate_tokens(ctx, ids, n, _core.Sampler(temperature=0.0), ignore_eos=True))
    return list(_PLAIN[key])
