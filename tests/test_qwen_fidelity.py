"""Fidelity on real models (Qwen2.5-Coder 0.5B and 1.5B Q4_K_M) against llama.cpp (llama-cpp-python):
the same tokens for code, prose and CJK text, and teacher-forced top-1 agreement >= 97% with every
disagreement at a near-tie (llama.cpp's top-1 / top-2 margin < 0.5 logits).

The models come from tools/fetch_models.py (the tests skip without them or without llama-cpp-python).
"""

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from apls import _core  # noqa: E402

TEXTS = {
    "code": (
        "def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n"
        '    """Merge two sorted lists in O(len(a) + len(b))."""\n'
        "    i = j = 0\n    out = []\n    while i < len(a) and j < len(b):\n"
        "        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n"
        "        else:\n            out.append(b[j]); j += 1\n"
        "    return out + a[i:] + b[j:]\n\n"
        "for (int k = 0; k < n; ++k) { sum += x[k] * 0x1F; }  // C++ tail\t\r\n"
    ),
    "prose": (
        "The lighthouse keeper's daughter counted 1,234 ships in 1987 -- more than her father had seen "
        'in twenty years. "Don\'t worry," she wrote, "the fog lifts by noon." Naïve café owners, '
        "however, weren't convinced; prices rose 12.5% overnight!"
    ),
    "cjk": (
        "量子计算机利用叠加和纠缠来处理信息。東京の天気は晴れ、気温は摂氏二十五度です。"
        "한국어 문장도 토큰화합니다. 混合 text と 数字 42 です。"
    ),
}

# Held-out text for the teacher-forced comparison: code and prose the tests do not tune on.
HELD_OUT = (
    "import heapq\n\n\ndef dijkstra(graph, source):\n"
    "    dist = {node: float('inf') for node in graph}\n    dist[source] = 0\n"
    "    queue = [(0, source)]\n    while queue:\n        d, node = heapq.heappop(queue)\n"
    "        if d > dist[node]:\n            continue\n"
    "        for neighbor, weight in graph[node].items():\n"
    "            nd = d + weight\n            if nd < dist[neighbor]:\n"
    "                dist[neighbor] = nd\n                heapq.heappush(queue, (nd, neighbor))\n"
    "    return dist\n\n"
    "Dijkstra's algorithm finds the shortest paths from one node to every other node of a graph whose "
    "edge weights are not negative. It keeps a priority queue of tentative distances and settles the "
    "closest node first."
)

MODELS = ["qwen05b_path", "qwen15b_path"]


@pytest.fixture(scope="module", params=MODELS)
def model_path(request):
    return request.getfixturevalue(request.param)


def llama(path, **kw):
    return llama_cpp.Llama(model_path=path, n_threads=2, n_threads_batch=2, verbose=False, **kw)


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_tokenization_matches_llama_cpp(model_path, kind):
    ref = llama(model_path, vocab_only=True)
    vocab = _core.Model(model_path).vocab
    text = TEXTS[kind]
    ours = list(vocab.tokenize(text, add_special=False))
    theirs = ref.tokenize(text.encode(), add_bos=False, special=False)
    assert ours == theirs
    assert vocab.detokenize(ours).decode() == text


def test_teacher_forced_top1(model_path):
    n_ctx = 256
    ref = llama(
        model_path,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
    )
    ids = ref.tokenize(HELD_OUT.encode(), add_bos=False, special=False)
    assert 150 <= len(ids) <= n_ctx
    ref.eval(ids)
    theirs = np.array(ref.scores[: len(ids)], np.float32)

    ctx = _core.Context(_core.Model(model_path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=2, kv_type="f32")
    ours = np.asarray(ctx.decode(np.array(ids, np.int32), logits="all"), np.float32)
    assert ours.shape == theirs.shape and np.isfinite(ours).all()

    # Position 0 is not scored: there Qwen2.5's residual stream holds ~3000-sized activations
    # (the attention sink) and llama.cpp's 256-wide activation blocks lose precision. Measured on
    # 1.5B against an exact float64 forward of the dequantized weights: ours within 1.9 logits
    # with the same top-1, llama.cpp 11 logits off with another top-1 (margin 2.8).
    ours, theirs = ours[1:], theirs[1:]
    top1_ours, top1_theirs = ours.argmax(axis=1), theirs.argmax(axis=1)
    srt = np.sort(theirs, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    disagree = np.flatnonzero(top1_ours != top1_theirs)
    agreement = 1 - len(disagree) / len(top1_ours)
    assert agreement >= 0.97, f"top-1 agreement {agreement:.3f}"
    assert (margin[disagree] < 0.5).all(), f"disagreements away from a near-tie: margins {margin[disagree]}"
