"""Fit the exponential's polynomial used by the kernels (fs_math.h, FS_EXPF_H*, FS_EXP_H*).

The kernels evaluate exp(r) = 1 + (r + r^2 h(r)) for |r| <= ln2/2 after the Cody-Waite
reduction.  This script finds the degree-d polynomial h that minimises the largest
relative error of that expression against exp(r), by Lawson's iteratively reweighted least
squares on Chebyshev points, in 60-digit arithmetic (mpmath), and prints the coefficients
rounded to float and double as C hex literals together with the error reached (in units
of 2^-24 and 2^-53).

    python bench/exp_coefficients.py          # degree 4 (float) and 9 (double)
    python bench/exp_coefficients.py 3 4 8 9  # compare degrees

Degree 3 leaves 1.8 units of 2^-24 of polynomial error in float and degree 8 leaves 2.6
units of 2^-53 in double; degrees 4 and 9 leave 0.05 and 0.03, which is what the kernels
use (the rounding of the last steps then dominates: about 1 ulp measured).
"""

import sys

import mpmath as mp

mp.mp.dps = 60


def _h(r):
    """(exp(r) - 1 - r) / r^2, with its limit 1/2 at 0."""
    return (mp.exp(r) - 1 - r) / r**2 if r != 0 else mp.mpf(1) / 2


def fit(degree, half_width, points=600, iterations=300):
    """Coefficients c[0..degree] of h and the largest relative error of exp reached."""
    nodes = [half_width * mp.cos(mp.pi * (i + mp.mpf(1) / 2) / points) for i in range(points)]
    targets = [_h(r) for r in nodes]
    # an error e in h is an error r^2 e in 1 + r + r^2 h, relative to exp(r)
    weights = [r**2 / mp.exp(r) for r in nodes]
    emphasis = [mp.mpf(1) / points] * points
    for _ in range(iterations):
        normal = mp.matrix(degree + 1, degree + 1)
        rhs = mp.matrix(degree + 1, 1)
        for r, target, weight, e in zip(nodes, targets, weights, emphasis):
            powers = [r**k for k in range(degree + 1)]
            factor = e * weight * weight
            for i in range(degree + 1):
                rhs[i] += factor * powers[i] * target
                for j in range(degree + 1):
                    normal[i, j] += factor * powers[i] * powers[j]
        coefficients = mp.lu_solve(normal, rhs)
        errors = [abs(weight * (mp.polyval(list(reversed(coefficients)), r) - target))
                  for r, target, weight in zip(nodes, targets, weights)]
        # Lawson's update: weight each point by the error it still has
        total = sum(e * err for e, err in zip(emphasis, errors))
        emphasis = [e * err / total for e, err in zip(emphasis, errors)]
    return [coefficients[k] for k in range(degree + 1)], max(errors)


def main(argv):
    import numpy as np

    degrees = [int(a) for a in argv] or [4, 9]
    half_width = mp.log(2) / 2 * (1 + mp.mpf(2) ** -20)   # the reduction's |r| bound, padded
    for degree in degrees:
        coefficients, error = fit(degree, half_width)
        print(f"degree {degree}: largest relative error {mp.nstr(error, 4)} = "
              f"{mp.nstr(error / mp.mpf(2) ** -24, 3)} x 2^-24 = "
              f"{mp.nstr(error / mp.mpf(2) ** -53, 3)} x 2^-53")
        for k, c in enumerate(coefficients):
            print(f"  h{k}: float {float(np.float32(float(c))).hex()}f  double {float(c).hex()}")


if __name__ == "__main__":
    main(sys.argv[1:])
