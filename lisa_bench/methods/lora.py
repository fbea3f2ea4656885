"""LoRA through peft."""

from dataclasses import dataclass, field

from ..errors import BadInput
from .base import Method, register


@dataclass
class LoraOptions:
    rank: int = 128
    alpha: float | None = None  # default: 2 x rank
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: "all-linear")


@register("lora")
class LoRA(Method):
    Options = LoraOptions
    flags = {"--lora-rank": ("rank", "LoRA rank")}
    quick_test = {"lr": 5e-3, "method_options": {"rank": 8}}

    @classmethod
    def validate_options(cls, options):
        if options.rank < 1:
            raise BadInput(f"lora rank must be >= 1, got {options.rank}")
        if not 0.0 <= options.dropout < 1.0:
            raise BadInput(f"lora dropout must be in [0, 1), got {options.dropout}")

    def prepare_model(self, model):
        from peft import LoraConfig, get_peft_model

        o = self.options
        config = LoraConfig(r=o.rank, lora_alpha=o.alpha if o.alpha is not None else 2 * o.rank,
                            lora_dropout=o.dropout, target_modules=o.target_modules, task_type="CAUSAL_LM")
        return get_peft_model(model, config)

    def save(self, model, tokenizer, out_dir, state_dict=None):
        # Only the adapter: loadable with peft's PeftModel.from_pretrained(base, out_dir).
        model.save_pretrained(out_dir, state_dict=state_dict)
        tokenizer.save_pretrained(out_dir)

    def is_adapter(self, name):
        return "lora_" in name

    def norm_parameters(self, named):
        # the adapters, and whatever else trains in full (e.g. an embedding made trainable)
        return [(n, p) for n, p in named if self.is_adapter(n) or p.requires_grad]
