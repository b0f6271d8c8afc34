"""`njit`: the decorator every compiled kernel of cures is written with, Numba's `njit` without a C callback wrapper;
and `prefetch`, a memory hint for compiled loops.

By default Numba emits, for every function it compiles, a C-callable wrapper (a `cfunc` entry), used only when the
compiled function is passed as a first-class function value or taken as a C callback address; cures does neither.
For a kernel taking a policy's state (a NamedTuple of some twenty arrays and a record) that wrapper is as large as the
kernel, and Numba optimises and emits it again in every function the kernel is compiled into. Leaving it out takes
about 3 s off a first `cures simulate` from an empty cache (2-core machine, `python tests/checkout_timings.py cold`)
and changes no result: the kernels' own machine code is the same. Every other option is Numba's, as given.
"""

from llvmlite import ir
from numba import njit as _numba_njit
from numba import types
from numba.extending import intrinsic


def njit(*args, **options):
    """`numba.njit(*args, **options)` with `no_cfunc_wrapper=True` unless given."""
    options.setdefault("no_cfunc_wrapper", True)
    return _numba_njit(*args, **options)


@intrinsic
def prefetch(typingctx, array, index):
    """prefetch(a, i), in compiled code: ask the CPU to start loading the cache line of element i of `a`'s memory
    (counted in elements from its first in memory; C order for a contiguous array), because it will be read soon.
    A hint only (`llvm.prefetch`, read, high locality): it changes no value and never faults, whatever i is.

    It pays where a loop's reads of scattered elements wait on each other's arithmetic (a dependent chain, such as
    a dot product or a tree descent), so that the CPU cannot start the next iterations' loads early by itself."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [byte_ptr],
                                              ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]))
        address = builder.bitcast(builder.gep(data, [args[1]]), byte_ptr)
        builder.call(fn, [address, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data cache
        return context.get_dummy_value()

    return types.void(array, index), codegen
