"""`njit`: the decorator every compiled kernel of cures is written with, Numba's `njit` without a C callback wrapper.

By default Numba emits, for every function it compiles, a C-callable wrapper (a `cfunc` entry), used only when the
compiled function is passed as a first-class function value or taken as a C callback address; cures does neither.
For a kernel taking a policy's state (a NamedTuple of some twenty arrays and a record) that wrapper is as large as the
kernel, and Numba optimises and emits it again in every function the kernel is compiled into. Leaving it out takes
about 3 s off a first `cures simulate` from an empty cache (2-core machine, `python tests/checkout_timings.py cold`)
and changes no result: the kernels' own machine code is the same. Every other option is Numba's, as given.
"""

from numba import njit as _numba_njit


def njit(*args, **options):
    """`numba.njit(*args, **options)` with `no_cfunc_wrapper=True` unless given."""
    options.setdefault("no_cfunc_wrapper", True)
    return _numba_njit(*args, **options)
