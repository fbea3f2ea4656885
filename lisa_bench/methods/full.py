"""Full-parameter fine-tuning: AdamW on every parameter."""

from torch import nn

from .base import Method, register


@register("full")
class FullFineTuning(Method):
    quick_test = {"lr": 2e-3}

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model.requires_grad_(True)
        return model
