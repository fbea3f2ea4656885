"""Analytic memory model of one training step: weights, gradients, optimizer state, activations.

Parameter-dependent parts are counted exactly on a ``meta``-device copy of the model after the
method has set it up (so LoRA adapters, tied weights and LISA's active set are the real ones).
Activations of Llama-style models (Llama, Mistral) are a per-token, per-layer formula for eager
attention (the paper's protocol: no flash attention, no gradient checkpointing): the tensors
autograd saves for backward, given which weights train. Other architectures (GPT-2, ...) are
traced instead: one forward pass on the meta device, counting the storages autograd saves,
which allocates nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import BadInput

LLAMA_STYLE = ("llama", "mistral")  # model types the activation formula covers
PAPER_CELLS = ("full", "lora-r128", "lora-r256", "lora-r512", "lisa-e-h", "lisa-e-h-2l", "lisa-e-h-4l",
               "lisa-callback-e-h-2l", "galore-r128")


@dataclass
class Cell:
    """One column of the memory table: a method with its options."""

    label: str
    method: str
    options: dict = field(default_factory=dict)


def parse_cell(label: str) -> Cell:
    if label == "full":
        return Cell(label, "full")
    if m := re.fullmatch(r"lora-r(\d+)", label):
        return Cell(label, "lora", {"rank": int(m[1]), "alpha": 2 * int(m[1]), "dropout": 0.0})
    if m := re.fullmatch(r"lisa-e-h(?:-(\d+)l)?", label):
        return Cell(label, "lisa", {"gamma": int(m[1] or 0), "interval": 1})
    if m := re.fullmatch(r"lisa-callback-e-h-(\d+)l", label):
        # interval 1: each measured step visits new blocks, so the callback's state growth shows
        return Cell(label, "lisa-callback", {"gamma": int(m[1]), "interval": 1})
    if m := re.fullmatch(r"galore-r(\d+)", label):
        return Cell(label, "galore", {"rank": int(m[1]), "update_proj_gap": 200})
    raise BadInput(f"unknown method {label!r}; valid choices: full, lora-r<rank>, lisa-e-h, lisa-e-h-<n>l, "
                   f"lisa-callback-e-h-<n>l, galore-r<rank> (e.g. {', '.join(PAPER_CELLS)})")


@dataclass
class Prediction:
    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    transient_bytes: int  # short-lived buffers at the peak (see ``peak_from_parts``)
    step_bytes: int  # temporaries of the optimizer step
    optimizer_forward_bytes: int  # optimizer state alive during forward and backward

    @property
    def peak_bytes(self) -> int:
        return peak_from_parts(self.weights_bytes, self.grads_bytes, self.optimizer_bytes, self.activations_bytes,
                               self.transient_bytes, self.step_bytes, self.optimizer_forward_bytes)


def peak_from_parts(weights, grads, optimizer, activations, transient, step=0, optimizer_forward=None) -> int:
    """Weights live throughout; activations and gradients take turns.

    The peak comes either at the start of backward (every saved activation plus the gradients
    of the fp32 logits or of one layer's attention probabilities, before any weight gradient
    exists, next to the optimizer state alive then) or at the optimizer step (all gradients,
    the full optimizer state and the step's temporaries, activations freed). The two states
    differ where state is created at the step: LISA drops the moments of the blocks it switches
    away from and the new blocks' moments appear at the next optimizer step.
    """
    forward = optimizer if optimizer_forward is None else optimizer_forward
    return weights + max(forward + activations + transient, optimizer + grads + step)


def _nbytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def _galore_state_bytes(optimizer) -> int:
    """GaLore projects each targeted matrix's gradient to rank r: moments of r x max(m, n) plus the
    r x min(m, n) projector; other parameters keep full AdamW moments."""
    total = 0
    for group in optimizer.param_groups:
        rank = group.get("rank")
        for p in group["params"]:
            if rank is not None and p.dim() == 2:
                big, small = max(p.shape), min(p.shape)
                r = min(rank, small)
                total += 2 * r * big * p.element_size() + r * small * p.element_size() + 4
            else:
                total += 2 * p.numel() * p.element_size() + 4
    return total


def llama_activation_bytes(config, model: nn.Module, layout, batch: int, seq: int, dtype: torch.dtype,
                           trains_block, lora_rank: int | None = None, adapter_dtype: torch.dtype | None = None) -> int:
    """Bytes autograd saves in one forward pass of a Llama-style model (eager attention).

    ``trains_block(i)`` says whether the linear weights of block i train (their inputs are then
    saved); every activation requires grad because something at or before block 0 trains.
    LoRA adapters in another dtype than the base (peft keeps them in fp32 on a bf16 base) cast
    their input, each adapted linear its own copy, and save that copy.
    """
    e = torch.finfo(dtype).bits // 8
    n = batch * seq
    h = config.hidden_size
    inter = config.intermediate_size
    heads = config.num_attention_heads
    d = getattr(config, "head_dim", None) or h // heads
    vocab = config.vocab_size
    probs = batch * heads * seq * seq * (4 + (e if e != 4 else 0))  # fp32 softmax out (+ cast copy)
    norm = n * h * 4 + n * 4  # fp32 input copy + rsqrt
    per_block_frozen = 2 * norm + 3 * n * heads * d * e + probs + 3 * n * inter * e
    total = 0
    for i in range(layout.num_blocks):
        total += per_block_frozen
        if trains_block(i):
            # q/k/v input, o_proj input, gate/up input, down_proj input, and both norm weights' inputs
            total += n * h * e + n * heads * d * e + n * h * e + n * inter * e + 2 * n * h * e
        elif lora_rank:
            # peft LoRA (dropout 0): each adapted linear saves its input and its lora_A output
            a = torch.finfo(adapter_dtype or dtype).bits // 8
            if a == e:  # q/k/v share one input, and gate/up another
                total += n * h * a + n * heads * d * a + n * h * a + n * inter * a
            else:  # one cast copy per adapted linear: q, k, v, o, gate, up, down
                total += 3 * n * h * a + n * heads * d * a + 2 * n * h * a + n * inter * a
            total += 7 * n * lora_rank * a
    total += norm + n * h * e  # final norm, lm_head input
    total += n * vocab * 4  # log_softmax output of the fp32 loss
    total += 2 * n * d * e + n * 8  # rotary cos/sin, token ids
    return total


def predict(config, cell: Cell, batch: int, seq: int, dtype: torch.dtype, steps: int,
            device_type: str = "cpu") -> Prediction:
    """Counts on a meta-device model; nothing is allocated."""
    from transformers import AutoModelForCausalLM

    from .layers import find_blocks
    from .methods import OptimConfig, get_method

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
    cls = get_method(cell.method)
    method = cls(cls.parse_options(cell.options), seed=0)
    model = method.prepare_model(model)
    layout = find_blocks(model)
    weights = _nbytes(model.parameters())
    # steps 1.. are measured; step 0 warms up (and creates the optimizer state)
    measured = range(1, steps) if steps > 1 else range(steps)
    if cell.method in ("lisa", "lisa-callback"):
        grads, optimizer, optimizer_forward, blocks_now, step_phase = _lisa_state(
            method, cell.method, model, layout, steps, measured, device_type)
        trains = lambda i: i in set(blocks_now)  # noqa: E731
    else:
        trainable = [p for p in model.parameters() if p.requires_grad]
        grads = _nbytes(trainable)
        if cell.method == "galore":
            optimizer = _galore_state_bytes(method.build_optimizer(model, OptimConfig(lr=1e-5)))
        else:
            optimizer = 2 * grads + 4 * len(trainable)
        optimizer_forward = optimizer if steps > 1 else 0  # created at the first step, then kept
        trains = (lambda i: True) if cell.method in ("full", "galore") else (lambda i: False)  # noqa: E731
    rank = cell.options.get("rank") if cell.method == "lora" else None
    adapter = next((p.dtype for n, p in model.named_parameters() if "lora_A" in n), None)
    if config.model_type in LLAMA_STYLE:
        activations = llama_activation_bytes(config, model, layout, batch, seq, dtype, trains, lora_rank=rank,
                                             adapter_dtype=adapter)
    else:
        if cell.method in ("lisa", "lisa-callback"):  # the blocks of the last step train
            for i in range(layout.num_blocks):
                for p in layout.block_params(model, i):
                    p.requires_grad_(trains(i))
        activations = traced_activation_bytes(model, batch, seq)
    transient = backward_transient_bytes(config, batch, seq)
    step = _step_temporaries([p for p in model.parameters() if p.requires_grad], device_type)
    if cell.method == "lisa":  # its two parameter groups step one after the other (see _lisa_state)
        step = step_phase - optimizer
    return Prediction(weights, grads, optimizer, activations, transient, step, optimizer_forward)


def _step_temporaries(params, device_type: str) -> int:
    """torch's AdamW: a per-tensor loop on the CPU (temporaries of about twice the largest tensor),
    foreach kernels on CUDA (temporaries of about all the group's parameters)."""
    if device_type == "cuda":
        return _nbytes(params)
    return 2 * max((p.numel() * p.element_size() for p in params), default=0)


def _lisa_state(method, name: str, model, layout, steps: int, measured, device_type: str):
    """Gradients, optimizer state after the step and during forward, over the sampled schedule,
    the blocks training at the last step, and the optimizer step's peak (state + temporaries).

    ``lisa`` drops the moments of the blocks it switches away from (the new blocks' moments are
    created at the next optimizer step); ``lisa-callback`` keeps those of every visited block.
    ``lisa`` steps its embedding/head group first, while the new blocks have no state yet, then
    the block group; ``lisa-callback`` has one group over all parameters."""
    schedule = method.schedule(max(1, steps))
    outside = layout.outside_params(model)
    interval = method.options.interval
    reset_outside = getattr(method.options, "reset_always_on_state", False)

    def state(blocks, with_outside: bool) -> int:
        params = [p for i in sorted(blocks) for p in layout.block_params(model, i)]
        params += outside if with_outside else []
        return 2 * _nbytes(params) + 4 * len(params)

    held, outside_on, forward, after, step_phase = set(), False, [], [], []
    for s, active in enumerate(schedule):
        if name == "lisa" and s % interval == 0:
            held = set()
            outside_on = outside_on and not reset_outside
        forward.append(state(held, outside_on))
        # the embedding/head group steps next to its own state and that of blocks kept from before
        before_blocks = state(held, True)
        held = held | set(active) if name == "lisa-callback" else set(active)
        outside_on = True
        after.append(state(held, True))
        blocks = [p for i in active for p in layout.block_params(model, i)]
        step_phase.append(max(before_blocks + _step_temporaries(outside, device_type),
                              after[-1] + _step_temporaries(blocks, device_type)))
    blocks_now = schedule[-1]
    grads = _nbytes(outside) + _nbytes(p for i in blocks_now for p in layout.block_params(model, i))
    return (grads, max(after[s] for s in measured), max(forward[s] for s in measured), blocks_now,
            max(step_phase[s] for s in measured))


def traced_activation_bytes(model: nn.Module, batch: int, seq: int) -> int:
    """Bytes autograd saves in one training-mode forward pass (with the loss) of a meta-device
    model: the unique storages handed to the saved-tensor hooks, parameters excluded."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in params:
            saved[storage._cdata] = storage.nbytes()
        return t

    model.train()
    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, labels=ids)
    except Exception as exc:  # e.g. a data-dependent operation that the meta device cannot run
        raise BadInput(f"no activation model for {type(model).__name__}: the meta-device trace failed "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); the formula "
                       f"covers model types {', '.join(LLAMA_STYLE)}") from None
    return sum(saved.values())


def backward_transient_bytes(config, batch: int, seq: int) -> int:
    """Gradients alive next to all activations at the start of backward: of the fp32 log-softmax
    and logits (2 x N x V x 4 B), or of one layer's attention scores and probabilities."""
    heads = config.num_attention_heads
    return max(2 * batch * seq * config.vocab_size * 4, 2 * batch * heads * seq * seq * 4)
