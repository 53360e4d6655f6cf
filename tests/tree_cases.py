"""Token trees for the tree tests on the CPU (test_tree.py) and on the GPU (test_cuda.py):
random trees in batch order and a node's root-to-node path."""


def random_tree(rng, n):
    """Parents of an n-node tree in batch order: each node's parent is an earlier node or -1."""
    return [-1] + [int(rng.integers(-1, i)) for i in range(1, n)]


def path_to(parent, b):
    """Batch indices from the root down to node b."""
    out = []
    while b >= 0:
        out.append(b)
        b = parent[b]
    return out[::-1]
