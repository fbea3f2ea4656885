from .registry import MODELS, LoadedModel, check_attention, load_model, model_config, resolve_dtype  # noqa: F401
