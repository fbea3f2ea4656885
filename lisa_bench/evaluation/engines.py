"""Inference engines for evaluation: ``hf`` (transformers, the default, any device) and ``vllm`` (an optional
extra, ``pip install -e '.[vllm]'``, CUDA only), for both lm-eval (its ``vllm`` model type) and MT-Bench
answers. vLLM loads a run's weights from its ``model/`` directory, or the base model plus the run's LoRA
adapter (``enable_lora`` with a ``LoRARequest``), split over every visible GPU (tensor parallelism): the
way to evaluate a 70B model that one GPU cannot hold."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BadInput, check_choice

ENGINES = ("hf", "vllm")


def check_engine(engine: str, device: str) -> None:
    """One line naming what is missing when vllm is asked for without the package or without a GPU."""
    check_choice("engine", engine, ENGINES)
    if engine != "vllm":
        return
    if importlib.util.find_spec("vllm") is None:
        raise BadInput("engine 'vllm' needs the vllm package and a CUDA GPU (pip install -e '.[vllm]'); valid "
                       "choices here: hf")
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        raise BadInput(f"engine 'vllm' needs a CUDA GPU (device {device!r}); valid choices here: hf")


@dataclass(frozen=True)
class VllmTarget:
    """What vLLM loads: a model directory or hub id, and a LoRA adapter directory to apply, if any."""

    model: str
    adapter: str | None = None
    rank: int | None = None


def vllm_target(run: str | None, model: str | None) -> VllmTarget:
    from ..models.registry import MODELS

    def path_of(name: str) -> str:
        if name == "smollm2-135m":
            from ..models.smollm2 import ensure_smollm2

            return str(ensure_smollm2())
        if name in MODELS:
            raise BadInput(f"model {name!r} is built in code; vLLM loads a model directory or a hub id")
        return name

    if model:
        return VllmTarget(path_of(model))
    run_dir = Path(run)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    adapter = run_dir / "model" / "adapter_config.json"
    if adapter.is_file():
        rank = json.loads(adapter.read_text()).get("r")
        return VllmTarget(path_of(metrics["model"]), str(adapter.parent), rank)
    if (run_dir / "model").is_dir():
        return VllmTarget(str(run_dir / "model"))
    return VllmTarget(path_of(metrics["model"]))


def lm_eval_model_args(target: VllmTarget) -> str:
    """lm-eval's ``vllm`` model arguments for a target."""
    args = [f"pretrained={target.model}", "dtype=auto", "gpu_memory_utilization=0.85",
            f"tensor_parallel_size={max(1, torch.cuda.device_count())}"]
    if target.adapter:
        args += ["enable_lora=True", f"lora_local_path={target.adapter}", f"max_lora_rank={target.rank}"]
    return ",".join(args)


def vllm_answers(target: VllmTarget, batches: list[list[dict]], temperature_of, max_new_tokens: int,
                 seed: int) -> dict[int, list[str]]:
    """Both turns of every question, a whole temperature group per vLLM call; question id -> answers."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(model=target.model, seed=seed, dtype="auto", enable_lora=target.adapter is not None,
              max_lora_rank=target.rank or 16, tensor_parallel_size=max(1, torch.cuda.device_count()))
    lora = LoRARequest("run", 1, target.adapter) if target.adapter else None
    answers: dict[int, list[str]] = {}
    for batch in batches:
        params = SamplingParams(temperature=temperature_of(batch[0]), max_tokens=max_new_tokens, seed=seed)
        conversations = [[] for _ in batch]
        for turn in range(max(len(q["turns"]) for q in batch)):
            for conv, q in zip(conversations, batch):
                conv.append({"role": "user", "content": q["turns"][turn]})
            outputs = llm.chat(conversations, params, lora_request=lora, use_tqdm=False)
            for conv, q, out in zip(conversations, batch, outputs):
                text = out.outputs[0].text.strip()
                answers.setdefault(q["question_id"], []).append(text)
                conv.append({"role": "assistant", "content": text})
    return answers
