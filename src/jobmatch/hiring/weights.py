"""Term weights from a hiring project's feedback counts.

003 gives its weight equation only as an image; jobmatch uses a smoothed log-lift, chosen because it is zero
for terms that say nothing, signed, and shrinks towards zero when a term has been seen on few candidates:

    rho(s, r)      = (C(s, r) + 1) / (N(s) + 2)                       project's rate of rating r in channel s
    rate(i, s, r)  = (c(i, t, s, r) + k * rho(s, r)) / (n(i, t, s) + k)
    w(i, t, s, r)  = log(rate(i, s, r) / rho(s, r))

where c counts candidates having term i that were shown in channel s and rated r, n counts candidates having
term i shown in channel s, and C, N are the same counts over all candidates; k (default 3) is the number of
pseudo-candidates of prior. A term never shown has weight 0; a term on which the hirer always acts gets a
positive weight that grows with evidence; one always passed over gets a negative weight.

The personalization feature is then z(t, s, r)(X) = <w(t, s, r), p_t(X)>: the sum of the weights of X's terms.
"""

from __future__ import annotations

import numpy as np

DEFAULT_PRIOR_STRENGTH = 3.0


def project_rate(C: np.ndarray, N: np.ndarray) -> np.ndarray:
    return (np.asarray(C, float) + 1.0) / (np.asarray(N, float) + 2.0)


def term_weight(c: np.ndarray, n: np.ndarray, C: np.ndarray, N: np.ndarray,
                k: float = DEFAULT_PRIOR_STRENGTH) -> np.ndarray:
    """Vectorized w(i, t, s, r); all arguments broadcast."""
    rho = project_rate(C, N)
    rate = (np.asarray(c, float) + k * rho) / (np.asarray(n, float) + k)
    return np.log(rate / rho)
