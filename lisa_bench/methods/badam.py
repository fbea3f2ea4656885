"""BAdam (Luo et al., 2024): block coordinate descent with Adam, through the authors' ``badam`` package.

One decoder block trains at a time, its Adam state and an fp32 master copy of it held by badam's
``BlockOptimizer``, which switches to the next block every ``switch_every`` optimizer steps (descending,
ascending or random order) and drops the old block's state. Embedding and head stay frozen (as the paper's
BAdam) unless ``include_embedding`` / ``include_lm_head`` make them blocks of their own. LISA's closest
relative: it trains one block, not E+H plus sampled blocks, and moves through the blocks in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import BadInput
from ..memory.accounting import optimizer_state_bytes, tensor_bytes
from .base import Method, register

ORDERS = ("descending", "ascending", "random")


@dataclass
class BadamOptions:
    switch_every: int = 50  # K: optimizer steps between block switches (badam's default)
    order: str = "descending"  # badam's switch_mode
    include_embedding: bool = False  # the embedding as a block of its own
    include_lm_head: bool = False  # the LM head (and the rest outside the blocks) as a block of its own


@register("badam")
class BAdam(Method):
    Options = BadamOptions
    ddp_wrappable = False  # the trainable block changes during the run
    not_shardable = "badam's BlockOptimizer copies whole parameters to fp32 masters (ZeRO-3 only via DeepSpeed)"
    own_optimizer = "badam's BlockOptimizer (fp32 masters of the active block)"
    keeps_masters = True  # its BlockOptimizer steps fp32 copies of the block: bf16-master adds none
    quick_test = {"lr": 2e-3, "method_options": {"switch_every": 5}}
    family_options = ("order", "include_embedding", "include_lm_head")

    def __init__(self, options, seed=0):
        super().__init__(options, seed)
        self._optimizer = None
        self.layout = None

    @classmethod
    def validate_options(cls, options):
        if options.switch_every < 1:
            raise BadInput(f"badam switch_every must be >= 1, got {options.switch_every}")
        if options.order not in ORDERS:
            raise BadInput(f"unknown badam order {options.order!r}; valid choices: {', '.join(ORDERS)}")

    def prepare_model(self, model):
        self.layout = self.find_blocks(model)
        model.requires_grad_(False)  # the BlockOptimizer unfreezes its first block
        return model

    def build_optimizer(self, model, optim):
        from badam import BlockOptimizer

        o = self.options
        base = torch.optim.AdamW(model.parameters(), lr=optim.lr, betas=optim.betas, eps=optim.eps,
                                 weight_decay=optim.weight_decay)
        blocks = [[f"{self.layout.blocks_path}.{i}."] for i in range(self.layout.num_blocks)]
        outside = [n for n, _ in model.named_parameters() if n not in self.layout.block_of]
        emb = {id(p) for p in model.get_input_embeddings().parameters()}
        names = dict(model.named_parameters())
        if o.include_embedding:
            blocks.insert(0, [n for n in outside if id(names[n]) in emb])
        if o.include_lm_head:
            blocks.append([n for n in outside if id(names[n]) not in emb])
        with torch.random.fork_rng(devices=[]):  # badam draws a random order from the global generator
            torch.manual_seed(self.seed)
            self._optimizer = BlockOptimizer(base, list(model.named_parameters()), block_prefix_list=blocks,
                                             switch_block_every=o.switch_every, switch_mode=o.order, verbose=0)
        return self._optimizer

    def active_blocks(self) -> list[int]:
        prefixes = self._optimizer.active_param_prefixs if self._optimizer else []
        return sorted({i for n, i in self.layout.block_of.items() if any(n.startswith(p) for p in prefixes)})

    def peak_blocks(self, num_blocks: int) -> list[int]:
        return [0]  # every order reaches the first block, whose training keeps every block's activations

    def state_dict(self) -> dict:
        opt = self._optimizer
        return {"global_step": opt.global_step, "current_block_idx": opt.current_block_idx,
                "block_order": list(getattr(opt, "block_order", [])), "active": list(opt.active_param_prefixs)}

    def load_state_dict(self, state, model, optimizer):
        opt = self._optimizer
        opt.global_step, opt.block_order = state["global_step"], list(state["block_order"])
        # make the saved block active again (fresh fp32 masters of the current weights), then the position
        opt.current_block_idx = opt.block_prefix_list.index(state["active"])
        opt.switch_trainable_params(verbose=0)
        opt.current_block_idx = state["current_block_idx"]

    def optimizer_bytes(self, optimizer) -> int:
        """badam keeps the Adam state in its base optimizer, next to fp32 master copies of the block."""
        masters = getattr(optimizer, "param_idx2hp", {}).values()
        return optimizer_state_bytes(optimizer.base_optimizer) + sum(tensor_bytes(p) for p in masters)

    def optimizer_state_bytes(self, params, state_dtype=None):
        """Two fp32 moments and an fp32 master copy of each trained parameter, and a step counter."""
        return sum(3 * p.numel() * 4 + 4 for p in params)
