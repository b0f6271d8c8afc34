"""cures._jit: the kernels' decorator and the prefetch hint."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cures._jit import njit, prefetch


@njit(cache=True)
def _sum_with_hints(a, b2, ids, far):
    s = 0.0
    for i in range(ids.shape[0]):
        prefetch(a, ids[i])
        prefetch(a, far)  # any index: a hint never faults
        prefetch(b2, ids[i] * b2.shape[1])
        s += a[ids[i]] + b2[ids[i], 0]
    return s


@given(st.lists(st.integers(0, 99), max_size=50), st.integers(-(2**40), 2**40))
def test_prefetch_changes_no_value_and_accepts_any_index(ids, far):
    a, b2 = np.arange(100.0), np.arange(300.0).reshape(100, 3)
    ids = np.array(ids, np.int64)
    assert _sum_with_hints(a, b2, ids, far) == sum(a[i] + b2[i, 0] for i in ids)


def test_kernels_are_compiled_without_the_c_callback_wrapper_unless_asked():
    from cures.sumtree import tree_find

    assert tree_find.targetoptions["no_cfunc_wrapper"] is True
    assert njit(no_cfunc_wrapper=False)(lambda x: x).targetoptions["no_cfunc_wrapper"] is False
