"""GPU specs, in one table: what each GPU is (the name `GPU=` takes, the name torch reports),
its memory, its generation, and the dense peak that model FLOPs are judged against (MFU).

Each model states its own FLOPs per token (utils/models/, `flops_per_token`: *model* FLOPs,
so activation checkpointing's recomputation is not counted and MFU says how well the model's
work is done).

The peak is the datasheet's **dense** rate (no 2:4 sparsity) for the precision the matmuls
ran in, so an fp32 run is judged against the fp32 peak, not the bf16 one. A device missing
from the table (or a precision its entry lacks) gets no MFU, never a guessed one; PEAK_TFLOPS=... supplies one
for such a device only.
Plain python: the report imports this without torch.
"""

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class GPU:
    key: str  # the name GPU= takes
    pattern: str  # matched against the device name torch reports; first match in GPUS wins
    name: str
    memory_gib: float  # on-board memory (the datasheet's GB of HBM / GDDR are GiB: nvidia-smi's total)
    capability: tuple  # CUDA compute capability: the generation
    peaks: dict  # {precision: dense TFLOP/s}
    bandwidth_tbs: float  # memory bandwidth, TB/s (10^12 bytes/s), datasheet
    nvlink: bool = False  # a node's GPUs talk over NVLink (SXM boards, NVSwitch); else over PCIe
    sms: int = None  # streaming multiprocessors (inductor sizes split reductions by them)
    host_link_gbs: float = None  # the link to host memory, GB/s each way (10^9 bytes/s), datasheet: offload's copies


# Sources: NVIDIA's datasheets (H100 PCIe / SXM / NVL: "NVIDIA H100 Tensor Core GPU"; H200 and
# GH200 share SXM's compute: "NVIDIA H200 Tensor Core GPU", "NVIDIA GH200 Grace Hopper
# Superchip"; A100: "NVIDIA A100 Tensor Core GPU"; A10, L4, T4: their product datasheets),
# halving the "with sparsity" tensor figures; GeForce cards: the Ada and Ampere architecture
# whitepapers (appendix tables: FP16 tensor with FP32 accumulate) and, for the laptop RTX 3050
# Ti, its 1695 MHz boost x 2560 CUDA cores x 2 FLOPs. Compute capabilities: NVIDIA's "CUDA GPUs"
# table (developer.nvidia.com/cuda-gpus). Bandwidths: the same datasheets (A100 80GB: SXM's
# 2,039 GB/s; the laptop RTX 3050 Ti: 128-bit GDDR6 at 12 Gbps, 192 GB/s). NVLink: the SXM boards'
# (HGX / DGX: NVSwitch between a node's 8 GPUs; the A100s are taken as SXM), per the same datasheets;
# H100 NVL's bridge joins pairs only, and the rest talk over PCIe. The links' bandwidths and
# latencies are NCCL's own model, as torch/_inductor/comm_analysis.py ports it (utils/plan/comm.py).
# SMs: the same datasheets and the architecture whitepapers (H100 SXM 132, PCIe 114; A100 108).
# Host links, each way: the datasheets' PCIe generation at x16 (their "PCIe Gen5: 128 GB/s", "Gen4: 64 GB/s",
# "Gen3: 32 GB/s" are both ways together), GH200's NVLink-C2C (900 GB/s both ways); GeForce cards: PCIe 4.0
# x16 (the Ada and Ampere whitepapers; the laptop RTX 3050 Ti: Gen4, its lanes taken as x16, an upper bound).
PCIE = {3: 16.0, 4: 32.0, 5: 64.0}  # PCIe generation -> GB/s each way at x16
# a node's GPUs at most: the 8 of an HGX / DGX board (NVSwitch between them, the datasheets above), beyond which
# NCCL's model of one node's links (utils/plan/comm.py) stands for nothing built
GPUS_PER_NODE = 8
# h100-hbm2e: the H100 of torchtitan's published benchmarks (benchmarks/llama3_h100_202412_torchtitan.md
# in its repository: 96 GB HBM2e at 2.4 TB/s, a 500 W limit, 8 per host over NVLink); its peak is
# "between SXM and NVL" there, and SXM's is taken, as torchtitan's own MFU figures take it: an upper bound.
ALLOCATOR_MODES = ("native", "expandable_segments")  # the CUDA caching allocator's (PYTORCH_CUDA_ALLOC_CONF)
MODULE_LOADINGS = ("lazy", "eager")  # CUDA_MODULE_LOADING: what the CUDA context holds
HOPPER_SXM = {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}
AMPERE_A100 = {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}
GPUS = (
    GPU("h100-pcie", r"H100.*PCIe", "H100 PCIe", 80, (9, 0), {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}, 2.0,
        sms=114, host_link_gbs=PCIE[5]),
    GPU("h100-nvl", r"H100 NVL", "H100 NVL", 94, (9, 0), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}, 3.9, sms=132,
        host_link_gbs=PCIE[5]),
    GPU("h100-hbm2e", r"H100.*HBM2e", "H100 96GB HBM2e (500 W)", 96, (9, 0), HOPPER_SXM, 2.4, nvlink=True,
        sms=132, host_link_gbs=PCIE[5]),  # torchtitan's benchmark GPU (Meta's Grand Teton); peaks: SXM's, see above
    GPU("h100-sxm", r"H100", "H100 SXM 80GB", 80, (9, 0), HOPPER_SXM, 3.35, nvlink=True, sms=132,
        host_link_gbs=PCIE[5]),
    GPU("gh200", r"GH200", "GH200 96GB", 96, (9, 0), HOPPER_SXM, 4.0, nvlink=True, sms=132,
        host_link_gbs=450.0),  # NVLink-C2C to the Grace CPU
    GPU("h200", r"H200", "H200 141GB", 141, (9, 0), HOPPER_SXM, 4.8, nvlink=True, sms=132,
        host_link_gbs=PCIE[5]),
    GPU("a100-80gb", r"A100.*80GB", "A100 80GB", 80, (8, 0), AMPERE_A100, 2.039, nvlink=True, sms=108,
        host_link_gbs=PCIE[4]),
    GPU("a100-40gb", r"A100", "A100 40GB", 40, (8, 0), AMPERE_A100, 1.555, nvlink=True, sms=108,
        host_link_gbs=PCIE[4]),
    GPU("a10", r"A10G?\b", "A10 / A10G", 24, (8, 6), {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}, 0.6,
        sms=72, host_link_gbs=PCIE[4]),  # A10G: AWS's
    GPU("l4", r"\bL4\b", "L4", 24, (8, 9), {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}, 0.3, sms=58,
        host_link_gbs=PCIE[4]),
    # GeForce: bf16 with fp32 accumulate
    GPU("rtx-4090", r"RTX 4090", "GeForce RTX 4090", 24, (8, 9), {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2}, 1.008,
        sms=128, host_link_gbs=PCIE[4]),
    GPU("rtx-3090", r"RTX 3090", "GeForce RTX 3090", 24, (8, 6), {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0}, 0.936,
        sms=82, host_link_gbs=PCIE[4]),
    GPU("rtx-3050-ti-laptop", r"RTX 3050 Ti Laptop", "GeForce RTX 3050 Ti Laptop", 4, (8, 6),
        {"fp32": 8.7, "tf32": 8.7, "bf16": 17.4}, 0.192, sms=20, host_link_gbs=PCIE[4]),  # at its 1695 MHz boost
    GPU("t4", r"\bT4\b", "T4", 16, (7, 5), {"fp32": 8.1, "fp16": 65.0}, 0.32, sms=40,
        host_link_gbs=PCIE[3]),  # Turing: fp16 tensor cores only
)
# compute capability -> architecture (NVIDIA's "CUDA GPUs" table); 10.x and newer: Blackwell
GENERATION_BY_CAPABILITY = {(7, 0): "volta", (7, 5): "turing", (8, 0): "ampere", (8, 6): "ampere",
                            (8, 9): "ada", (9, 0): "hopper"}
PRECISION = {"fp32": "fp32", "tf32": "tf32", "bf16-autocast": "bf16", "fp16-autocast": "fp16", "bf16-weights": "bf16"}


def generation(gpu):
    """The GPU's architecture, by its compute capability."""
    major = gpu.capability[0]
    return GENERATION_BY_CAPABILITY.get(tuple(gpu.capability), "blackwell" if major >= 10 else f"sm{major}")


def by_key(key):
    """The GPU `GPU=key` names; ValueError naming the known keys otherwise."""
    for gpu in GPUS:
        if gpu.key == key:
            return gpu
    raise ValueError(f"unknown GPU {key!r} (known: {', '.join(g.key for g in GPUS)})")


def nodes_for(gpus, at_least=1):
    """The fewest nodes, `at_least` of them (at most one a GPU), that hold `gpus` GPUs evenly at GPUS_PER_NODE or
    fewer each."""
    return next(n for n in range(max(min(at_least, gpus), -(-gpus // GPUS_PER_NODE)), gpus + 1) if gpus % n == 0)


def resized(gpu, memory_gib):
    """`gpu` with `memory_gib` of memory (a card of another size: GPU_MEMORY_GIB=), its name saying so."""
    return dataclasses.replace(gpu, name=f"{gpu.name} at {memory_gib:g} GiB", memory_gib=memory_gib)


def memory_gib_of(device):
    """The memory of the GPU a device name names, GiB: a resized card's (resized), else the table's; None
    where no GPU of the table matches."""
    found = re.search(r" at ([0-9.e+-]+) GiB", str(device))
    gpu = by_name(device)
    return float(found.group(1)) if found and gpu else gpu.memory_gib if gpu else None


def by_name(device):
    """The GPU whose pattern matches a device name torch reports, or None."""
    return next((gpu for gpu in GPUS if re.search(gpu.pattern, str(device))), None)


def gpu_name(device):
    """The table's name of the GPU a device name (as torch reports it) is, or None."""
    return getattr(by_name(device), "name", None)


def peak_tflops(device, dtype, override=None):
    """Dense peak TFLOP/s for this device and dtype column value: the table's, else `override` (PEAK_TFLOPS), else
    None. The table's datasheet figure is never overridden."""
    gpu = by_name(device)
    table = None if gpu is None else peak_of(gpu, dtype)
    return table if table is not None else float(override) if override else None


def peak_of(gpu, dtype):
    """The GPU's dense peak TFLOP/s for a dtype column value, or None."""
    precision = PRECISION.get(dtype)
    # fp16 tensor cores run at the bf16 rate wherever a card has both
    return gpu.peaks.get(precision, gpu.peaks.get("bf16") if precision == "fp16" else None)
