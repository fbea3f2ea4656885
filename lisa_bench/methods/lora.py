"""LoRA through peft."""

import warnings
from dataclasses import dataclass, field

from ..errors import BadInput
from .base import Method, register


@dataclass
class LoraOptions:
    rank: int = 128
    alpha: float | None = None  # default: 2 x rank
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: "all-linear")
    # base weights trained in full next to the adapters: embedding, head, norms (the authors' LoRA for the
    # paper's norm figure made the embedding, LM head and norms trainable)
    also_train: list[str] = field(default_factory=list)


ALSO = ("embedding", "head", "norms")


@register("lora")
class LoRA(Method):
    Options = LoraOptions
    flags = {"--lora-rank": ("rank", "LoRA rank")}
    quick_test = {"lr": 5e-3, "method_options": {"rank": 8}}
    family_options = ("target_modules", "also_train")  # the rank is its size

    def __init__(self, options, seed=0):
        super().__init__(options, seed)
        if options.also_train:
            self.not_shardable = "with also_train it saves the merged model, which needs the whole model in one place"

    @classmethod
    def validate_options(cls, options):
        if options.rank < 1:
            raise BadInput(f"lora rank must be >= 1, got {options.rank}")
        if not 0.0 <= options.dropout < 1.0:
            raise BadInput(f"lora dropout must be in [0, 1), got {options.dropout}")
        for unit in options.also_train:
            if unit not in ALSO:
                raise BadInput(f"unknown lora also_train unit {unit!r}; valid choices: {', '.join(ALSO)}")

    def prepare_model(self, model):
        from peft import LoraConfig, get_peft_model

        o = self.options
        config = LoraConfig(r=o.rank, lora_alpha=o.alpha if o.alpha is not None else 2 * o.rank,
                            lora_dropout=o.dropout, target_modules=o.target_modules, task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(model, config)
        for unit in o.also_train:
            for p in self._unit_params(model, unit):
                p.requires_grad_(True)
        return model

    def _unit_params(self, model, unit: str):
        if unit == "embedding":
            return list(model.get_input_embeddings().parameters())
        if unit == "head":
            return list(model.get_output_embeddings().parameters())
        return [p for n, p in model.named_parameters() if "norm" in n.split(".")[-2] and not self.is_adapter(n)]

    def save(self, model, tokenizer, out_dir, state_dict=None):
        if self.options.also_train:  # base weights changed too: the merged model, loadable as full weights
            model.merge_and_unload().save_pretrained(out_dir, safe_serialization=True)
        else:  # only the adapter: loadable with peft's PeftModel.from_pretrained(base, out_dir)
            model.save_pretrained(out_dir, state_dict=state_dict)
        tokenizer.save_pretrained(out_dir)

    def is_adapter(self, name):
        return "lora_" in name

    def norm_parameters(self, named):
        # the adapters, and whatever else trains in full (e.g. an embedding made trainable)
        return [(n, p) for n, p in named if self.is_adapter(n) or p.requires_grad]
