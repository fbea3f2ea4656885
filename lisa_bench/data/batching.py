"""Which examples every optimizer step trains on: a plan over epochs, micro-batches and processes.

One seeded permutation per epoch, drawn the way a shuffling ``DataLoader`` with a seeded generator
draws it (so the order is the one a plain PyTorch loop would see), cut into global batches of
``batch_size x processes`` examples, each process taking its own contiguous share; ``grad_accum_steps``
consecutive global batches make one optimizer step. With ``group_by_length`` each epoch's permutation
is cut into mega-batches of 50 batches whose examples are sorted by length (longest first), as
transformers' ``LengthGroupedSampler`` does, so that a batch pads less.

The plan is a pure function of its arguments: a run resumed at step ``s`` asks for steps ``s, s+1, ...``
and sees exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import math

import torch

MEGA_BATCHES = 50  # batches per length-sorted group (transformers' LengthGroupedSampler)


class StepPlan:
    def __init__(self, lengths: list[int], batch_size: int, grad_accum_steps: int = 1, seed: int = 0,
                 world_size: int = 1, rank: int = 0, group_by_length: bool = False):
        self.lengths = list(lengths)
        self.n = len(self.lengths)
        self.batch_size = batch_size
        self.accum = grad_accum_steps
        self.world, self.rank = world_size, rank
        self.global_batch = batch_size * world_size
        self.group_by_length = group_by_length
        # the last batch of an epoch may be partial; a process whose share of it is empty gets an empty list
        # (the loop then runs a masked row, so that every process takes part in each step's collectives)
        self.batches_per_epoch = math.ceil(self.n / self.global_batch)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.accum) if self.batches_per_epoch else 0
        self._generator = torch.Generator().manual_seed(seed)
        self._index_loader = torch.utils.data.DataLoader(range(self.n), batch_size=self.n or 1, shuffle=True,
                                                         generator=self._generator)
        self._epochs: list[list[list[int]]] = []  # global batches of each epoch drawn so far

    def steps_for_epochs(self, epochs: float) -> int:
        return math.ceil(self.steps_per_epoch * epochs)

    def _epoch(self, e: int) -> list[list[int]]:
        while len(self._epochs) <= e:  # epochs are drawn in order from one generator, as a DataLoader does
            order = [i for b in self._index_loader for i in b.tolist()]  # exhausted, as a training epoch is
            if self.group_by_length:
                order = self._length_grouped(order)
            batches = [order[i:i + self.global_batch] for i in range(0, self.n, self.global_batch)]
            self._epochs.append(batches[: self.batches_per_epoch])
        return self._epochs[e]

    def _length_grouped(self, order: list[int]) -> list[int]:
        size = MEGA_BATCHES * self.global_batch
        megas = [sorted(order[i:i + size], key=lambda j: -self.lengths[j]) for i in range(0, len(order), size)]
        if megas:  # the longest example of the epoch first, so a batch that does not fit fails at once
            longest = max(range(len(megas)), key=lambda m: self.lengths[megas[m][0]])
            megas[0][0], megas[longest][0] = megas[longest][0], megas[0][0]
        return [i for mega in megas for i in mega]

    def step(self, step: int) -> list[list[int]]:
        """This process's micro-batches (example indices) of optimizer step ``step``; with several processes
        a share of the epoch's last, partial batch may be empty."""
        if not self.steps_per_epoch:
            raise ValueError("the dataset has fewer examples than one batch of all processes")
        epoch, k = divmod(step, self.steps_per_epoch)
        batches = self._epoch(epoch)[k * self.accum:(k + 1) * self.accum]
        share = self.batch_size
        return [b[self.rank * share:(self.rank + 1) * share] for b in batches]
