"""GaLore (gradient low-rank projection) through transformers' ``galore_adamw`` optimizer."""

import tempfile
from dataclasses import dataclass, field

from ..errors import BadInput
from .base import Method, register, state_size


@dataclass
class GaloreOptions:
    rank: int = 128
    update_proj_gap: int = 200
    scale: float = 0.25
    proj_type: str = "std"
    target_modules: list[str] | str = field(default_factory=lambda: ["attn", "mlp"])


@register("galore")
class GaLore(Method):
    Options = GaloreOptions
    own_optimizer = "galore_torch's GaLoreAdamW"
    not_shardable = "its projection takes the SVD of whole gradient matrices, which FSDP2 keeps in shards"
    quick_test = {"lr": 2e-3, "method_options": {"rank": 16, "update_proj_gap": 10}}
    family_options = ("target_modules", "proj_type")  # the rank is its size

    def __init__(self, options, seed=0):
        super().__init__(options, seed)
        self._rank_of: dict[int, int] = {}  # id(parameter) -> projection rank, for the projected matrices

    @classmethod
    def validate_options(cls, options):
        if options.rank < 1:
            raise BadInput(f"galore rank must be >= 1, got {options.rank}")
        if options.update_proj_gap < 1:
            raise BadInput(f"galore update_proj_gap must be >= 1, got {options.update_proj_gap}")

    def prepare_model(self, model):
        model.requires_grad_(True)
        return model

    def build_optimizer(self, model, optim):
        from transformers import Trainer, TrainingArguments
        from transformers.utils import logging as hf_logging

        o = self.options
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # one "matched but ignored" line per non-linear module otherwise
        with tempfile.TemporaryDirectory() as scratch:
            args = TrainingArguments(
                output_dir=scratch, optim="galore_adamw", optim_target_modules=o.target_modules,
                optim_args=f"rank={o.rank},update_proj_gap={o.update_proj_gap},scale={o.scale},proj_type={o.proj_type}",
                learning_rate=optim.lr, weight_decay=optim.weight_decay, adam_beta1=optim.betas[0],
                adam_beta2=optim.betas[1], adam_epsilon=optim.eps, report_to=[], use_cpu=True,
            )
            optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        hf_logging.set_verbosity(verbosity)
        params = kwargs.pop("params")
        self._rank_of = {id(p): group["rank"] for group in params if isinstance(group, dict) and "rank" in group
                         for p in group["params"]}
        return optimizer_cls(params, **kwargs)

    def optimizer_state_bytes(self, params, state_dtype=None):
        """Each projected matrix keeps AdamW moments of rank x its larger side and a rank x smaller-side
        projector; every other parameter keeps full AdamW moments. galore_torch counts steps in a Python
        int, which holds no tensor memory."""
        total = 0
        for p in params:
            rank = self._rank_of.get(id(p))
            if rank is not None and p.dim() == 2:
                big, small = max(p.shape), min(p.shape)
                r = min(rank, small)
                total += (2 * r * big + r * small) * state_size(p, state_dtype)
            else:
                total += 2 * p.numel() * state_size(p, state_dtype)
        return total
