"""The CUDA caching allocator, replayed: what the GPU reserves for a step's allocations.

A plan records every allocation and free of the fake step in order (utils/measure/memory.py,
`PeakTracker(record=True)`); `replay` runs them through a model of PyTorch's allocator as
c10/cuda/CUDACachingAllocator.cpp behaves with its default settings:

- sizes are rounded up to 512 bytes (kMinBlockSize); requests of at most 1 MiB (kSmallSize)
  come from the small pool, the rest from the large pool;
- a request takes the smallest cached free block of its pool that fits (best fit: the pool's
  blocks ordered by size, then address); a block larger than the request is split when what
  remains is >= 512 bytes (small pool) or > 1 MiB (large pool), the request keeping the low
  addresses (should_split, alloc_found_block);
- where no cached block fits, a new segment is cudaMalloc'd: 2 MiB (kSmallBuffer) for a small
  request, 20 MiB (kLargeBuffer) for one under 10 MiB (kMinLargeAlloc), else the request
  rounded up to 2 MiB (kRoundLarge) (get_allocation_size);
- a freed block is merged with its free neighbours in the same segment and cached, never
  returned to the device (reserved memory only grows);
- when cudaMalloc fails (the device's capacity reached), every cached segment wholly free is
  released and the allocation retried (release_cached_blocks: the `alloc_retries` that
  torchtitan logs), and only then is it an out-of-memory error.

`expandable_segments:True` (PYTORCH_CUDA_ALLOC_CONF) is the other mode: one segment per pool
that grows by mapping pages (2 MiB small, 20 MiB large) at its end, blocks split down to 512
bytes in either pool (Note [Expandable Segments]). Modelled: growth at the end and best fit
inside; an OOM retry unmaps the free pages at the segment's end only (the allocator also
unmaps wholly free pages inside, so the model can run out of memory a little earlier).
A CUDA graph's allocations come from its own private pool (`PrivatePool`, begin_allocate_to_pool:
every allocation made while a graph is captured, and every one cudagraph trees make while warming
up or recording): a pool with its own cached blocks, never shared with the device's default pools,
whose segments stay reserved while the graph lives. A trace event may name its pool (a third
element); the pools share the device's capacity, and an allocation that finds no room releases
the default pools' wholly free segments (release_cached_blocks skips the live graphs' pools).
Another stream's allocations: a cached block serves only the stream it was allocated on (the
allocator's blocks carry their stream, and get_free_block looks for the request's stream), so a
side stream's allocations are a pool of their own too (an event's pool named STREAM ...); unlike a
graph's, a failed cudaMalloc releases their wholly free segments with the default pools'. Under
FSDP2 that is its all-gather buffers (allocated on its all-gather copy-in stream) and the sharded
gradients its reduce-scatters write (allocated on its reduce-scatter stream, then kept as the
parameters' gradients: torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py, foreach_reduce).
Not modelled: max_split_size_mb, garbage_collection_threshold, roundup_power2.
"""

import bisect
import dataclasses
import math

from utils.devices import ALLOCATOR_MODES
from utils.units import MIB

MIN_BLOCK = 512  # kMinBlockSize
SMALL_SIZE = MIB  # kSmallSize: the largest small-pool request
SMALL_BUFFER = 2 * MIB  # kSmallBuffer
MIN_LARGE_ALLOC = 10 * MIB  # kMinLargeAlloc
LARGE_BUFFER = 20 * MIB  # kLargeBuffer
ROUND_LARGE = 2 * MIB  # kRoundLarge
RELEASE = "empty_cache"  # a trace event's key: the default pools' wholly free segments returned (emptyCache)
STREAM = "stream"  # the start of a side stream's pool name in a trace (utils/plan/parallel.py's side_streams)


def round_size(size):
    return MIN_BLOCK if size < MIN_BLOCK else MIN_BLOCK * math.ceil(size / MIN_BLOCK)


def allocation_size(size):
    """get_allocation_size: the segment cudaMalloc'd for a request no cached block serves."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * math.ceil(size / ROUND_LARGE)


class OutOfMemory(Exception):
    pass


@dataclasses.dataclass(eq=False)
class Block:
    size: int
    address: int
    small: bool
    free: bool = True
    prev: "Block" = None  # neighbours in the same segment
    next: "Block" = None


@dataclasses.dataclass
class Replay:
    """What the allocator would hold: peaks over the whole trace, bytes."""

    peak_allocated: int = 0
    peak_reserved: int = 0
    retries: int = 0  # cache releases after a failed cudaMalloc (each a slow step on a GPU)
    retried_at: list = dataclasses.field(default_factory=list)  # each release's index in `events` (persistent apart)
    oom_at: int = None  # the event index where memory ran out even after releasing (None: it fit)
    oom_request: int = 0  # the request that failed, bytes


class CachingAllocator:
    """The allocator's state: cached free blocks by pool, segments, reserved and allocated bytes."""

    def __init__(self, capacity=None, mode="native", device=None, private=False):
        if mode not in ALLOCATOR_MODES:
            raise ValueError(f"unknown allocator mode {mode!r} (known: {', '.join(ALLOCATOR_MODES)})")
        self.capacity, self.expandable = capacity, mode == "expandable_segments"
        self.private = private  # a CUDA graph's pool: release_cached_blocks leaves it be
        # the pools sharing the device's memory (the default pool first: the one a failed
        # cudaMalloc releases), this one among them
        self.device = device if device is not None else [self]
        self.free_blocks = {True: [], False: []}  # small? -> sorted [(size, address, block)]
        self.allocated = self.reserved = self.retries = 0
        self.next_address = 0
        # expandable: one segment per pool (small, large), far apart in the address space:
        # its base, its mapped end and the block that ends it
        self.base = {True: 0, False: 1 << 50}
        self.end = dict(self.base)
        self.last = {True: None, False: None}

    # the pools' ordered free sets: (size, address) as BlockComparatorSize orders them
    def _cache(self, block):
        bisect.insort(self.free_blocks[block.small], (block.size, block.address, id(block), block))

    def _uncache(self, block):
        blocks = self.free_blocks[block.small]
        del blocks[bisect.bisect_left(blocks, (block.size, block.address, id(block)))]

    def _should_split(self, block, size):
        remaining = block.size - size
        return remaining >= MIN_BLOCK if block.small or self.expandable else remaining > SMALL_SIZE

    def malloc(self, nbytes):
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        block = self._best_fit(small, size) or self._new_memory(small, size)
        if block is None:
            self.retries += 1
            for pool in self.device:
                if not pool.private:
                    pool._release_cached()
            block = self._new_memory(small, size)
            if block is None:
                raise OutOfMemory(size)
        if self._should_split(block, size):
            rest = Block(block.size - size, block.address + size, small, prev=block, next=block.next)
            if block.next:
                block.next.prev = rest
            block.next, block.size = rest, size
            if self.last[small] is block:
                self.last[small] = rest
            self._cache(rest)
        block.free = False
        self.allocated += block.size
        return block

    def free(self, block):
        self.allocated -= block.size
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                self._uncache(neighbour)
                if self.last[block.small] in (block, neighbour):  # the merged block ends the segment
                    self.last[block.small] = block.prev if neighbour is block.prev else block
                if neighbour is block.prev:
                    neighbour.size += block.size
                    neighbour.next = block.next
                    if block.next:
                        block.next.prev = neighbour
                    block = neighbour
                else:
                    block.size += neighbour.size
                    block.next = neighbour.next
                    if neighbour.next:
                        neighbour.next.prev = block
        block.free = True
        self._cache(block)

    def _best_fit(self, small, size):
        blocks = self.free_blocks[small]
        i = bisect.bisect_left(blocks, (size,))
        if i == len(blocks):
            return None
        return blocks.pop(i)[-1]

    def _fits(self, nbytes):
        return self.capacity is None or sum(pool.reserved for pool in self.device) + nbytes <= self.capacity

    def _new_memory(self, small, size):
        """cudaMalloc a segment (native) or map pages at the segment's end (expandable); None
        where the device has no room."""
        if not self.expandable:
            segment = allocation_size(size)
            if not self._fits(segment):
                return None
            self.reserved += segment
            block = Block(segment, self.next_address, small)
            self.next_address += segment + LARGE_BUFFER  # segments are not adjacent
            return block
        page = _page(small)
        tail = self._tail(small)
        grow = page * math.ceil((size - (tail.size if tail else 0)) / page)
        if not self._fits(grow):
            return None
        self.reserved += grow
        if tail:
            self._uncache(tail)
            tail.size += grow
        else:
            tail = Block(grow, self.end[small], small, prev=self.last[small])
            if tail.prev:
                tail.prev.next = tail
        self.end[small] += grow
        self.last[small] = tail
        return tail

    def _tail(self, small):
        """Expandable: the free block at the segment's mapped end, if the last block is free."""
        last = self.last[small]
        return last if last is not None and last.free else None

    def _release_cached(self):
        """release_cached_blocks: return every wholly free segment (native), or the free pages
        at the segment's end (expandable), to the device."""
        for small, blocks in self.free_blocks.items():
            if self.expandable:
                self._unmap_tail(small)
                continue
            whole = [entry for entry in blocks if entry[-1].prev is None and entry[-1].next is None]
            for entry in whole:
                blocks.remove(entry)
                self.reserved -= entry[-1].size


    def _unmap_tail(self, small):
        """Expandable: unmap the whole pages of the free block at the segment's end."""
        tail, page = self._tail(small), _page(small)
        if tail is None:
            return
        first_whole = self.base[small] + page * math.ceil((tail.address - self.base[small]) / page)
        freed = self.end[small] - first_whole
        if freed <= 0:
            return
        self._uncache(tail)
        tail.size -= freed
        self.end[small] -= freed
        self.reserved -= freed
        if tail.size:
            self._cache(tail)
        else:  # the block is gone: the one before it ends the segment
            self.last[small] = tail.prev
            if tail.prev:
                tail.prev.next = None


def _page(small):
    """Expandable segments map 2 MiB pages for the small pool, 20 MiB for the large one."""
    return SMALL_BUFFER if small else LARGE_BUFFER


def replay(events, capacity=None, mode="native", persistent=()):
    """Run a plan's trace through the allocator. `events`: (storage key, bytes[, pool]) in order,
    bytes negative for a free (utils/measure/memory.py's PeakTracker), pool naming a CUDA graph's
    private pool or a side stream's (STREAM ...; absent or None: the default pools), the key
    RELEASE: torch.cuda.empty_cache();
    `persistent`: sizes allocated first and kept (cuBLAS workspaces). `capacity`: the bytes the
    allocator may reserve (None: no limit). Returns a Replay, its peaks summed over the pools; with
    an OOM, the peaks up to it."""
    device, live, result = [], {}, Replay()
    pools = {None: CachingAllocator(capacity, mode, device)}
    device.append(pools[None])
    events = [(None, size) for size in persistent] + list(events)
    for index, (key, nbytes, *pool) in enumerate(events):
        if key == RELEASE:
            pools[None]._release_cached()
            continue
        if nbytes < 0:
            owner, block = live.pop(key, (None, None))
            if block is not None:
                owner.free(block)  # back to the pool it came from
            continue
        if nbytes == 0:
            continue  # a zero-byte storage holds no memory on CUDA either
        name = pool[0] if pool else None
        if name not in pools:
            private = not str(name).startswith(STREAM)
            pools[name] = CachingAllocator(capacity, mode, device, private)
            device.append(pools[name])
        released = pools[name].retries
        try:
            block = pools[name].malloc(nbytes)
        except OutOfMemory as oom:
            result.oom_at, result.oom_request = index, oom.args[0]
            break
        if pools[name].retries > released:
            result.retried_at.append(index - len(persistent))
        if key is not None:
            live[key] = (pools[name], block)
        result.peak_allocated = max(result.peak_allocated, sum(p.allocated for p in device))
        result.peak_reserved = max(result.peak_reserved, sum(p.reserved for p in device))
    result.retries = sum(p.retries for p in device)
    return result
