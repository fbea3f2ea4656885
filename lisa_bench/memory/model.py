"""Analytic memory model of one training step: weights, gradients, optimizer state, activations.

Parameter-dependent parts are counted exactly on a ``meta``-device copy of the model: the method
sets it up, builds its optimizer and runs its per-step switches there (``on_step_start``) exactly as
in training, so LoRA adapters, tied weights, LISA's active set and which parameters hold optimizer
state at every step are the real ones; the method itself says how many bytes of state each
parameter costs (``Method.optimizer_state_bytes``). Activations come from ``activations.py``: a
closed form for Llama-style models at every precision, attention implementation and with gradient
checkpointing, a meta-device trace for other architectures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BadInput
from .accounting import tensor_bytes
from .activations import (LLAMA_STYLE, Compute, backward_transient_bytes, llama_activation_bytes, lora_adapters,
                          traced_activation_bytes)


@dataclass
class Prediction:
    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    transient_bytes: int  # short-lived buffers at the peak (see ``peak_from_parts``)
    step_bytes: int  # temporaries of the optimizer step
    optimizer_forward_bytes: int  # optimizer state alive during forward and backward
    gathered_bytes: int = 0  # FSDP2: unsharded parameters (and a block's gradients) in flight, per GPU
    buckets_bytes: int = 0  # DDP: the reducer's gradient buckets, per GPU
    flops_per_token: float = 0.0  # matrix FLOPs of forward and backward (see speed.py)
    step_traffic_per_token: float = 0.0  # the optimizer step's memory traffic, per token
    loses_updates: bool = False  # pure bf16 with trainable bf16 weights: steps below half their spacing are lost

    @property
    def peak_bytes(self) -> int:
        return peak_from_parts(self.weights_bytes, self.grads_bytes, self.optimizer_bytes, self.activations_bytes,
                               self.transient_bytes, self.step_bytes, self.optimizer_forward_bytes,
                               self.gathered_bytes, self.buckets_bytes)


def peak_from_parts(weights, grads, optimizer, activations, transient, step=0, optimizer_forward=None, gathered=0,
                    buckets=0) -> int:
    """Weights live throughout; activations and gradients take turns.

    The peak comes either at the start of backward (every saved activation plus the gradients
    of the fp32 logits or of one layer's attention probabilities, before any weight gradient
    exists, next to the optimizer state alive then) or at the optimizer step (all gradients,
    the full optimizer state and the step's temporaries, activations freed). The two states
    differ where state is created at the step: LISA drops the moments of the blocks it switches
    away from and the new blocks' moments appear at the next optimizer step.
    """
    forward = optimizer if optimizer_forward is None else optimizer_forward
    return weights + max(forward + activations + transient + gathered, optimizer + grads + step + buckets)


def _nbytes(params) -> int:
    return sum(tensor_bytes(p) for p in params)


@dataclass
class OptimizerTimeline:
    """Per step of a simulated run: gradients, optimizer state alive during forward/backward and after
    the step, and the step's own peak (state + gradients + temporaries)."""

    grads: list[int]
    forward: list[int]
    after: list[int]
    step_peak: list[int]


def simulate_optimizer(method, model: nn.Module, optimizer, steps: int, device_type: str,
                       precision=None) -> OptimizerTimeline:
    """Run the method's switches for ``steps`` steps on a (meta-device) model and follow which
    parameters hold optimizer state. A parameter gets state when it steps (it requires grad and
    is in one of the optimizer's groups) and keeps it until the method drops it (``optimizer.state.pop``),
    which is how LISA frees the blocks it switches away from. The optimizer steps its groups one
    after the other; each group's new state appears next to that group's temporaries. The precision says
    what a parameter's state holds besides the method's own (fp32 masters, Kahan buffers)."""
    from ..precision import resolve_precision, state_bytes, step_temporary_bytes

    precision = precision or resolve_precision("fp32")
    t = OptimizerTimeline([], [], [], [])
    state = lambda: state_bytes(precision, method, list(optimizer.state))  # noqa: E731
    for step in range(steps):
        method.on_step_start(step, model, optimizer)
        t.forward.append(state())
        grads = _nbytes(p for p in model.parameters() if p.requires_grad)
        peak = 0
        for group in optimizer.param_groups:
            stepping = [p for p in group["params"] if p.requires_grad]
            for p in stepping:
                optimizer.state.setdefault(p, {})
            peak = max(peak, state() + step_temporary_bytes(precision, method, stepping, device_type))
        t.grads.append(grads)
        t.after.append(state())
        t.step_peak.append(grads + peak)
    return t


def predict(config, method: str, options: dict | None, batch: int, seq: int, precision: str, steps: int,
            device_type: str = "cpu", attention: str = "eager", checkpointing: bool = False, launcher: str = "single",
            processes: int = 1, whole_run: bool = False) -> Prediction:
    """The memory of ``steps`` training steps of a registered method (step 0 is a warm-up, the rest are
    measured) at a precision (fp32, bf16, bf16-mixed, bf16-master, bf16-kahan, bf16-sr: what the optimizer keeps besides
    its moments too), attention implementation and with or without gradient checkpointing, per GPU of a
    ``launcher`` (single, ddp, fsdp) over ``processes`` GPUs with ``batch`` sequences on each. Counts on a meta-device model; nothing is allocated. ``whole_run``: the
    activations of the step where the whole run peaks (``Method.peak_blocks``), not those of the first steps."""
    from transformers import AutoModelForCausalLM

    from ..methods import OptimConfig, build_method
    from ..precision import check_method, loses_updates, resolve_precision

    prec = resolve_precision(precision)
    compute = Compute.of(prec, attention, checkpointing, device_type)
    llama = config.model_type in LLAMA_STYLE
    if not llama and (compute.autocast or attention != "eager" or checkpointing):
        raise BadInput(f"the memory model covers {precision}, {attention} attention"
                       f"{' and gradient checkpointing' if checkpointing else ''} for model types "
                       f"{', '.join(LLAMA_STYLE)}; {config.model_type} is traced in fp32/bf16 with eager attention "
                       f"and no checkpointing only")
    m = build_method(method, options, seed=0)
    check_method(prec, m)  # a recipe that cannot serve the method has no memory to predict
    with torch.device("meta"):  # the method's own modules too (peft's adapters): no initialisation runs
        model = m.prepare_model(AutoModelForCausalLM.from_config(config, dtype=prec.weights,
                                                                 attn_implementation="eager"))
    layout = m.find_blocks(model)
    weights = _nbytes(model.parameters())
    opt = m.build_optimizer(model, OptimConfig(lr=1e-5))  # torch's AdamW stands in for optimi's on meta tensors
    t = simulate_optimizer(m, model, opt, max(1, steps), device_type, prec)
    measured = range(1, steps) if steps > 1 else range(1)
    grads = max(t.grads[s] for s in measured)
    optimizer = max(t.after[s] for s in measured)
    step = max(t.step_peak[s] for s in measured) - optimizer - grads
    # activations: the trainable set of the last step (every step trains the same number of blocks)
    if llama:
        own = {}  # block -> its own (not adapter) parameters
        for n, p in model.named_parameters():
            if n in layout.block_of and not m.is_adapter(n):
                own.setdefault(layout.block_of[n], []).append(p)
        trains = lambda i: any(p.requires_grad for p in own.get(i, []) if p.dim() > 1)  # noqa: E731  (its linears)
        norms = lambda i: any(p.requires_grad for p in own.get(i, []) if p.dim() == 1)  # noqa: E731
        peak = m.peak_blocks(layout.num_blocks) if whole_run else None
        if peak is not None:
            trains = norms = lambda i: i in peak  # noqa: E731
        activations, largest = llama_activation_bytes(config, layout.num_blocks, batch, seq, compute, trains,
                                                      lambda i: lora_adapters(layout.blocks[i]),
                                                      outside_trains(model, layout), norms)
    else:
        activations, largest = traced_activation_bytes(model, batch, seq), 0
    from .speed import work_per_token

    flops, traffic = work_per_token(model, layout, batch * seq)
    transient = backward_transient_bytes(config, batch, seq, compute, largest)
    pred = Prediction(weights, grads, optimizer, activations, transient,
                      step, max(t.forward[s] for s in measured), flops_per_token=flops, step_traffic_per_token=traffic,
                      loses_updates=loses_updates(prec, opt.state))
    if launcher == "fsdp":
        return sharded(pred, model, layout, processes)
    if launcher == "ddp" and processes > 1 and m.ddp_wrappable:  # LISA syncs gradients itself, without buckets
        pred.buckets_bytes = grads
    return pred


def sharded(pred: Prediction, model: nn.Module, layout, processes: int) -> Prediction:
    """Per GPU under FSDP2 (each block and the root fully_shard-ed): parameters, gradients and optimizer
    state in 1/N shards, and in flight the unsharded root (embedding, final norm, head: kept from forward
    into backward) and two blocks (the running one and the prefetched next), with one block's unsharded
    gradients before their reduce-scatter."""
    n = processes
    block = max(_nbytes(layout.block_params(model, [i])) for i in range(layout.num_blocks))
    block_grads = max(_nbytes(p for p in layout.block_params(model, [i]) if p.requires_grad)
                      for i in range(layout.num_blocks))
    root = _nbytes(layout.outside_params(model))
    return Prediction(-(-pred.weights_bytes // n), -(-pred.grads_bytes // n), -(-pred.optimizer_bytes // n),
                      pred.activations_bytes, pred.transient_bytes, -(-pred.step_bytes // n),
                      -(-pred.optimizer_forward_bytes // n), gathered_bytes=root + 2 * block + block_grads,
                      flops_per_token=pred.flops_per_token, step_traffic_per_token=pred.step_traffic_per_token / n,
                      loses_updates=pred.loses_updates)


def outside_trains(model: nn.Module, layout) -> dict[str, bool]:
    """Whether the embedding, the final norm and the LM head train."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    emb_ids = {id(p) for p in emb.parameters()}
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    outside = [p for n, p in model.named_parameters() if n not in layout.block_of]
    return {"embedding": any(p.requires_grad for p in emb.parameters()),
            "head": any(p.requires_grad for p in head.parameters()) if head is not None else False,
            "norm": any(p.requires_grad for p in outside if id(p) not in emb_ids | head_ids)}


