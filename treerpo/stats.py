"""The statistics of the miniature reproduction: means with confidence intervals over seeds,
paired comparisons by seed, and curves read at equal compute. Pure Python, no SciPy.

    mean_ci(xs)          mean and 95% CI over seeds:  m +- t_{0.975, n-1} * s / sqrt(n)
                         (s the sample std; Student's t, since 5 seeds is a small sample)
    paired(a, b)         a - b per seed: the mean difference with its t-interval, the paired
                         t-test's two-sided p, and the exact sign-flip permutation p (all 2^n
                         sign patterns of the differences; no normality assumed)
    interpolate(x, y, q) a run's curve read at q, linearly between its validations; None
                         outside the range the run covered (never extrapolated)

Student's t distribution comes from the regularised incomplete beta function,
    P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2),
evaluated with Lentz's continued fraction; its quantile by bisection.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = p (p > 0.5), by bisection on the two-sided tail."""
    target = 2.0 * (1.0 - p)
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def mean_ci(xs: Sequence[float], level: float = 0.95) -> dict:
    """{"mean", "lo", "hi", "n", "sd"}; with one value the interval is that value, with none NaN."""
    xs = [float(x) for x in xs if x is not None and not math.isnan(x)]
    n = len(xs)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0, "sd": math.nan}
    m = sum(xs) / n
    if n == 1:
        return {"mean": m, "lo": m, "hi": m, "n": 1, "sd": 0.0}
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return {"mean": m, "lo": m - half, "hi": m + half, "n": n, "sd": sd}


def sign_flip_p(diffs: Sequence[float]) -> float:
    """Exact two-sided permutation p of the mean difference: the share of the 2^n sign patterns
    whose |mean| is at least the observed one (the observed pattern counts)."""
    d = [float(x) for x in diffs]
    if not d:
        return math.nan
    observed = abs(sum(d)) - 1e-12
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """a - b, paired by position (seed): mean difference, its CI, the paired t-test's p and the
    sign-flip p. Pairs where either side is missing are left out (`n` says how many remain)."""
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None and not (math.isnan(x) or math.isnan(y))]
    out = mean_ci(diffs, level)
    n = out["n"]
    if n >= 2 and out["sd"] > 0:
        t = out["mean"] / (out["sd"] / math.sqrt(n))
        out["t_p"] = t_two_sided_p(t, n - 1)
    else:
        out["t_p"] = math.nan if n < 2 else (0.0 if out["mean"] != 0 else 1.0)
    out["sign_flip_p"] = sign_flip_p(diffs)
    out["diffs"] = diffs
    return out


def interpolate(xs: Sequence[float], ys: Sequence[float], q: float) -> Optional[float]:
    """y at x = q on the polyline through (xs, ys) (xs increasing); None outside [xs[0], xs[-1]]."""
    if not xs or q < xs[0] - 1e-9 or q > xs[-1] + 1e-9:
        return None
    for i in range(1, len(xs)):
        if q <= xs[i] + 1e-9:
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return y1 if x1 == x0 else y0 + (y1 - y0) * (q - x0) / (x1 - x0)
    return ys[-1] if abs(q - xs[-1]) <= 1e-9 else ys[0]


def first_reach(xs: Sequence[float], ys: Sequence[float], target: float) -> Optional[float]:
    """The smallest x where the polyline through (xs, ys) reaches `target` (linear between
    points), or None if it never does."""
    for i, (x, y) in enumerate(zip(xs, ys)):
        if y >= target:
            if i == 0:
                return x
            x0, y0 = xs[i - 1], ys[i - 1]
            return x0 + (x - x0) * (target - y0) / (y - y0)
    return None
