"""A small module to try completions on: `make demo` completes the body of `mean`."""

import math


def mean(values):
    """Return the arithmetic mean of a non-empty sequence of numbers."""
    

def stdev(values):
    """Return the sample standard deviation of a sequence of numbers."""
    m = mean(values)
    return math.sqrt(sum((x - m) ** 2 for x in values) / (len(values) - 1))
