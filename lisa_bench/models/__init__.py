from .registry import MODELS, LoadedModel, load_model, model_config, resolve_dtype  # noqa: F401
