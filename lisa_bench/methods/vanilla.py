"""No training: the untrained base model (the "Vanilla" row of the paper's score tables).

Its run directory holds metrics.json naming the model and no ``model/``: evaluation loads that
model directly.
"""

from .base import Method, register


@register("base")
class BaseModel(Method):
    trains = False

    def prepare_model(self, model):
        model.requires_grad_(False)
        return model

    def save(self, model, tokenizer, out_dir, state_dict=None):
        pass
