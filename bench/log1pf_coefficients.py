"""Fit the float log1p polynomial used by the kernels (fs_math.h, FS_LOG1PF_S*).

sigsoftmax's float gaps need the softplus tail log1p(t) for t = exp(-|z|) in [0, 1], to
a small absolute error (the tail lies in [0, log 2] and is added to values of order 1).
The kernels evaluate it as t + t^2 s(t), with s a polynomial of degree 8 in t: no range
reduction and no division.  This script fits s to (log1p(t) - t) / t^2 by weighted least
squares on Chebyshev points of [0, 1] in 50-digit arithmetic (mpmath), one coefficient at
a time: each is rounded to float before the remaining ones are fitted to what it left, so
that the rounding of the leading coefficients is compensated by the later ones (rounding
all of a plain fit's coefficients at the end cost 1.43 units of 2^-24 instead of 1.11).
The weight t^2 + 1e-3 puts the emphasis on the absolute error of t + t^2 s(t).

    python bench/log1pf_coefficients.py       # degree 8
    python bench/log1pf_coefficients.py 7 8   # compare degrees

It prints the coefficients as C hex literals and the largest absolute error of the
polynomial itself (exact arithmetic, units of 2^-24).  In float arithmetic with FMA the
kernels' evaluation measured 1.11 units of 2^-24 (every 7th float of [0, 1]), which the
rounding of its last steps dominates; degree 7 measured the same absolute error but 2.6
ulp relative to log1p(t) near t = 0.03, against 1.11 for degree 8.
"""

import sys

import mpmath as mp

mp.mp.dps = 50


def _s(t):
    """(log1p(t) - t) / t^2, with its limit -1/2 at 0."""
    return (mp.log1p(t) - t) / t**2 if t != 0 else -mp.mpf(1) / 2


def _to_float(value):
    import numpy as np

    return float(np.float32(float(value)))


def fit(degree, points=80):
    """Coefficients c[0..degree] of s, each rounded to float."""
    nodes = [(1 - mp.cos(mp.pi * (i + mp.mpf(1) / 2) / points)) / 2 for i in range(points)]
    targets = [_s(t) for t in nodes]
    weights = [t**2 + mp.mpf("1e-3") for t in nodes]
    fixed = []
    for k in range(degree + 1):
        free = range(k, degree + 1)
        matrix = mp.matrix(points, len(free))
        rhs = mp.matrix(points, 1)
        for row, (t, target, weight) in enumerate(zip(nodes, targets, weights)):
            rhs[row] = weight * (target - sum(c * t**i for i, c in enumerate(fixed)))
            for column, i in enumerate(free):
                matrix[row, column] = weight * t**i
        solution, _ = mp.qr_solve(matrix, rhs)
        fixed.append(_to_float(solution[0]))
    return fixed


def largest_error(coefficients, samples=4000):
    """Largest |t + t^2 s(t) - log1p(t)| over [0, 1], in units of 2^-24."""
    worst = mp.mpf(0)
    for i in range(samples + 1):
        t = mp.mpf(i) / samples
        value = t + t**2 * mp.polyval(list(reversed([mp.mpf(c) for c in coefficients])), t)
        worst = max(worst, abs(value - mp.log1p(t)))
    return worst * 2**24


def main(argv):
    for degree in [int(a) for a in argv] or [8]:
        coefficients = fit(degree)
        print(f"degree {degree}: polynomial error {float(largest_error(coefficients)):.3f} "
              "units of 2^-24")
        for k, c in enumerate(coefficients):
            mantissa, exponent = c.hex().split("p")
            print(f"#define FS_LOG1PF_S{k} {mantissa.rstrip('0')}p{exponent}f")


if __name__ == "__main__":
    main(sys.argv[1:])
