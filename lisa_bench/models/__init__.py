from .registry import MODELS, LoadedModel, load_model, model_names  # noqa: F401
