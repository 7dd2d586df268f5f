"""Evaluation sharded over ranks: each rank translates its share, results come back in dataset order.

Whole batches are dealt out (batch k of the 1-rank order goes to rank k mod world size), never single
samples, so every sample is padded and beam-searched in exactly the batch it would have on one rank:
the gathered output of N ranks equals the 1-rank output exactly, and each sample is seen (and any
problem with it counted) once.
"""
import torch.distributed as dist
from torch.utils.data import Sampler


def _world():
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedBatchSampler(Sampler):
    """The 1-rank batches of `n` samples in order; this rank keeps every `shards`-th one.

    `shards=1` gives every rank every batch (needed under ZeRO-3, where all ranks must run each
    forward pass together to gather the partitioned weights).
    """

    def __init__(self, n, batch_size, rank=0, shards=1):
        self.batches = [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
        self.rank, self.shards = (rank, shards) if shards > 1 else (0, 1)

    def global_index(self, step):
        """Position in the 1-rank order of this rank's `step`-th batch."""
        return step * self.shards + self.rank

    def __iter__(self):
        return iter(self.batches[self.rank::self.shards])

    def __len__(self):
        return len(self.batches[self.rank::self.shards])


def broadcast_buffers(module):
    """Give every rank rank 0's buffers before evaluating: BatchNorm running statistics drift apart in
    training (each rank updates them from its own batches; DeepSpeed never syncs them), and the
    checkpoints hold rank 0's. Training is unaffected (it normalises with batch statistics)."""
    if _world()[1] > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_ordered(local):
    """{key: value} from every rank, merged (a key seen on several ranks is kept once), in key order."""
    world = _world()[1]
    merged = {}
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, local)
        for part in parts:
            merged.update(part)
    else:
        merged.update(local)
    return [merged[key] for key in sorted(merged)]


def sum_over_ranks(tensor, sharded):
    """Sum a statistics tensor over ranks when each rank saw a disjoint share (else it is already whole)."""
    if sharded and _world()[1] > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def union_over_ranks(items):
    """The union of every rank's set of (hashable, sortable) items: one met by two ranks counts once."""
    if _world()[1] == 1:
        return set(items)
    parts = [None] * _world()[1]
    dist.all_gather_object(parts, sorted(items))
    return set().union(*map(set, parts))
