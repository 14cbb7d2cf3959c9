"""Term weights from a hiring project's feedback counts.

003 gives its weight equation only as an image; jobmatch uses a smoothed log-lift, chosen because it is zero
for terms that say nothing, signed, and shrinks towards zero when a term has been seen on few candidates:

    rho(s, r)      = C(s, r) / N(s)                                    project's rate of rating r in channel s
    rate(i, s, r)  = (c(i, t, s, r) + k) / (n(i, t, s) + k / rho(s, r))
    w(i, t, s, r)  = log(rate(i, s, r) / rho(s, r)),   and w = 0 while C(s, r) = 0

where c counts candidates having term i that were shown in channel s and rated r, n counts candidates having
term i shown in channel s, and C, N are the same counts over all candidates. The prior is a Beta centred on the
project's own rate and worth k (default 3) pseudo-*ratings* — as many candidates as it takes the project to give
k such ratings — so it is as strong against a rare rating as against a common one.

Why not k pseudo-candidates at a Laplace-smoothed rate (the first version): with no rating yet (C = 0) every
term shown on n earlier candidates got w = log(k / (n + k)) < 0 — a weight made of impression counts alone, with
no hirer feedback in it. The ranker used it as a "how typical is this candidate of the project's earlier
candidates" feature, and that, not per-project learning, was the with-online model's gain on requests whose
project had no feedback yet. Now a project with no ratings has all-zero weights, and a term rated at exactly the
project's rate has weight 0 at any volume.

A term never shown has weight 0; a term on which the hirer always acts gets a positive weight that grows with
evidence; one always passed over gets a negative one. The personalization feature is then
z(t, s, r)(X) = <w(t, s, r), p_t(X)>: the sum of the weights of X's terms.
"""

from __future__ import annotations

import numpy as np

DEFAULT_PRIOR_STRENGTH = 3.0


def project_rate(C: np.ndarray, N: np.ndarray) -> np.ndarray:
    """C / N, and 0 where nothing was shown."""
    C, N = np.asarray(C, float), np.asarray(N, float)
    return np.divide(C, N, out=np.zeros(np.broadcast(C, N).shape), where=N > 0)


def term_weight(c: np.ndarray, n: np.ndarray, C: np.ndarray, N: np.ndarray,
                k: float = DEFAULT_PRIOR_STRENGTH) -> np.ndarray:
    """Vectorized w(i, t, s, r); all arguments broadcast."""
    c, n = np.asarray(c, float), np.asarray(n, float)
    rho = project_rate(C, N)
    rated = rho > 0
    shape = np.broadcast(c, n, rho).shape
    rho_b, rated_b = np.broadcast_to(rho, shape), np.broadcast_to(rated, shape)
    safe = np.where(rated_b, rho_b, 1.0)
    rate = (np.broadcast_to(c, shape) + k) / (np.broadcast_to(n, shape) + k / safe)
    return np.where(rated_b, np.log(rate / safe), 0.0)
