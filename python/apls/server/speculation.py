"""When speculation pays in a shared batch: a step-cost model and each request's draft length.

A step decodes one batch; its time grows with the tokens in it, t(n) = a + b * n (b: the cost
of one more token, large on a CPU, where a batch is compute-bound; a: the part every step pays,
reading the weights). A request's draft of j tokens adds b * j to the step that every request in
it waits for, and earns the drafts the model accepts: draft token j is accepted with probability
about alpha^j (alpha: the request's acceptance rate), worth, in time, what the batch takes per
token, t(n) / n_out (n_out: tokens the step outputs without drafts). So token j pays when

    alpha^j * t(n) / n_out > b.

With one request on a CPU (b close to a) a draft needs alpha above about 1/2; on a GPU, where b
is small next to a, almost any draft pays; with many requests in the batch, fewer do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StepCost:
    """Least-squares fit of step time against batch tokens, t = a + b * n, forgetting old steps
    (weight `decay` per step) so it follows the load of the machine."""

    decay: float = 0.98
    _w: float = 0.0
    _sn: float = 0.0
    _snn: float = 0.0
    _st: float = 0.0
    _snt: float = 0.0

    def observe(self, n_tokens: int, seconds: float) -> None:
        d = self.decay
        self._w = d * self._w + 1.0
        self._sn = d * self._sn + n_tokens
        self._snn = d * self._snn + n_tokens * n_tokens
        self._st = d * self._st + seconds
        self._snt = d * self._snt + n_tokens * seconds

    def coefficients(self) -> tuple[float, float] | None:
        """(a, b) in seconds, or None until steps of different sizes were seen."""
        if self._w == 0.0:
            return None
        mean_n = self._sn / self._w
        var_n = self._snn / self._w - mean_n * mean_n
        if var_n < 0.25:  # every step had about the same size: b is not identifiable yet
            return None
        b = (self._snt / self._w - mean_n * self._st / self._w) / var_n
        b = max(b, 0.0)
        a = max(self._st / self._w - b * mean_n, 0.0)
        return a, b

    def token_threshold(self, n_batch: int, n_out: int) -> float:
        """b * n_out / t(n_batch): draft token j pays when alpha^j exceeds this (see the module
        text). Until the fit exists, 0.5: a draft needs even odds."""
        ab = self.coefficients()
        if ab is None or n_out <= 0:
            return 0.5
        a, b = ab
        t = a + b * max(n_batch, 1)
        return b * n_out / t if t > 0 else 1.0


@dataclass
class DraftStats:
    """One request's speculation: its acceptance rate (moving average over its verify steps)
    and what it drafted and accepted."""

    alpha: float = 0.5
    n_drafted: int = 0
    n_accepted: int = 0
    n_spec_steps: int = 0
    idle_steps: int = 0  # decode steps since its last draft

    def draft_len(self, threshold: float, k_max: int, probe_every: int = 16) -> int:
        """Tokens of draft that pay: the largest j <= k_max with alpha^j > threshold. A request
        whose drafts stopped paying still tries one token every `probe_every` steps, so that its
        rate can recover when its text turns repetitive."""
        j, p = 0, self.alpha
        while j < k_max and p > threshold:
            j += 1
            p *= self.alpha
        if j == 0 and self.idle_steps >= probe_every:
            j = min(1, k_max)
        return j

    def record(self, n_drafted: int, n_accepted: int) -> None:
        if n_drafted == 0:
            self.idle_steps += 1
            return
        self.idle_steps = 0
        self.n_drafted += n_drafted
        self.n_accepted += n_accepted
        self.n_spec_steps += 1
        # Per-token acceptance of this step: accepted of the drafted prefix that was tried.
        tried = min(n_drafted, n_accepted + 1)
        self.alpha = 0.7 * self.alpha + 0.3 * (n_accepted / tried)

    @property
    def tau(self) -> float:
        """Tokens per verify step over the steps that verified a draft (the model's own token
        included); 0 when it never drafted."""
        return (self.n_accepted + self.n_spec_steps) / self.n_spec_steps if self.n_spec_steps else 0.0

    @property
    def acceptance(self) -> float:
        return self.n_accepted / self.n_drafted if self.n_drafted else 0.0
