"""make codegen_check: a generated wrapper's memory read statement by statement, and its refusal without Triton."""

import pytest

from utils import checks
from utils.plan import codegen_check

MIB = 2**20
# the shape of what inductor's wrapper codegen writes (torch/_inductor/codegen/wrapper.py): allocations, a reuse of a
# dead buffer, a view, an extern kernel's own output and the items of its tuple, frees
CALL = """def call(self, args):
    primals_1, primals_2, view_1 = args
    args.clear()
    buf0 = empty_strided_cuda((1024, 256), (256, 1), torch.float32)
    del primals_1
    buf1 = empty_strided_cuda((1024, 256), (256, 1), torch.bfloat16)
    buf2 = buf0; del buf0  # reuse
    buf3 = reinterpret_tensor(buf1, (256, 1024), (1, 256), 0); del buf1  # reuse
    buf4 = torch.ops.aten._scaled_dot_product_flash_attention.default(buf2, buf2, buf2)
    buf5 = buf4[0]
    buf6 = buf4[1]
    del buf4
    del view_1
    del buf2
    return (buf3, buf5, buf6, )
"""


def test_a_wrappers_memory_follows_its_allocations_reuses_views_and_frees():
    inputs = [("a", 4 * MIB), ("b", 2 * MIB), ("b", 2 * MIB)]  # view_1: a view of primals_2's storage
    extern = {"buf5": MIB, "buf6": MIB}.get
    memory = codegen_check.WrapperMemory(inputs, extern).run(CALL)
    # inputs 6 MiB (view_1 shares primals_2's storage) + buf0 1 MiB: the peak, 7; primals_1 freed (-4), buf1 +0.5,
    # a reuse and a view allocate and free nothing, the attention's two outputs +2, view_1 frees nothing (primals_2
    # holds the storage), buf2 frees buf0's megabyte: 7 - 4 + 0.5 + 2 - 1 = 4.5 MiB at the end
    assert memory.peak == 7 * MIB
    assert memory.live == 4.5 * MIB


def test_strided_bytes_reach_the_furthest_element():
    assert codegen_check._strided_bytes("4, 256, 1", "256, 1, 1024", "float32") == 4 * 256 * 4
    assert codegen_check._strided_bytes("", "", "bfloat16") == 2  # a scalar


def test_without_triton_it_refuses_in_one_line(monkeypatch):
    monkeypatch.setattr("torch.utils._triton.has_triton_package", lambda: False)
    with pytest.raises(checks.BadInput, match="needs Triton"):
        codegen_check.require_triton()
