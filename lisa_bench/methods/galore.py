"""GaLore (gradient low-rank projection) through transformers' ``galore_adamw`` optimizer."""

import tempfile
from dataclasses import dataclass, field

from .base import Method, register
from ..errors import BadInput


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

        o = self.options
        with tempfile.TemporaryDirectory() as scratch:
            args = TrainingArguments(
                output_dir=scratch, optim="galore_adamw", optim_target_modules=o.target_modules,
                optim_args=f"rank={o.rank},update_proj_gap={o.update_proj_gap},scale={o.scale},proj_type={o.proj_type}",
                learning_rate=optim.lr, weight_decay=optim.weight_decay, adam_beta1=optim.betas[0],
                adam_beta2=optim.betas[1], adam_epsilon=optim.eps, report_to=[], use_cpu=True,
            )
            optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        params = kwargs.pop("params")
        return optimizer_cls(params, **kwargs)
