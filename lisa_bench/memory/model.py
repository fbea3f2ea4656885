"""Analytic memory model of one training step: weights, gradients, optimizer state, activations.

Parameter-dependent parts are counted exactly on a ``meta``-device copy of the model: the method
sets it up, builds its optimizer and runs its per-step switches there (``on_step_start``) exactly as
in training, so LoRA adapters, tied weights, LISA's active set and which parameters hold optimizer
state at every step are the real ones; the method itself says how many bytes of state each
parameter costs (``Method.optimizer_state_bytes``). Activations of Llama-style models (Llama,
Mistral) are a per-token, per-layer formula for eager attention (the paper's protocol: no flash
attention, no gradient checkpointing): the tensors autograd saves for backward, given which weights
train and which linears carry peft LoRA adapters. Other architectures (GPT-2, ...) are traced
instead: one forward pass on the meta device, counting the storages autograd saves, which
allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BadInput
from .accounting import SavedTensorCounter, tensor_bytes

LLAMA_STYLE = ("llama", "mistral")  # model types the activation formula covers


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
    return sum(tensor_bytes(p) for p in params)


@dataclass(frozen=True)
class Adapter:
    """A peft LoRA adapter on one linear layer, as the activation count needs it."""

    name: str  # the adapted module's own name (q_proj, ...)
    in_features: int
    rank: int
    dropout: float
    dtype: torch.dtype


def lora_adapters(block: nn.Module) -> list[Adapter]:
    """The peft LoRA adapters in one decoder block (read from the model's structure)."""
    from peft.tuners.lora import LoraLayer

    found = []
    for name, m in block.named_modules():
        if isinstance(m, LoraLayer) and m.active_adapters and m.active_adapters[0] in m.lora_A:
            key = m.active_adapters[0]
            drop = m.lora_dropout[key]
            found.append(Adapter(name.rsplit(".", 1)[-1], m.in_features, m.r[key],
                                 drop.p if isinstance(drop, nn.Dropout) else 0.0, m.lora_A[key].weight.dtype))
    return found


# linears of a Llama block that read the same input tensor
_SHARED_INPUT = {"q_proj": "attention", "k_proj": "attention", "v_proj": "attention", "gate_proj": "mlp",
                 "up_proj": "mlp"}


def adapter_activation_bytes(adapters: list[Adapter], tokens: int, dtype: torch.dtype, device_type: str) -> int:
    """What peft's LoRA saves in a block whose own weights are frozen. Each adapter saves the input of
    its ``lora_A`` and the output of ``lora_A`` (the input of ``lora_B``). That input is the layer's
    input itself where dtypes agree and there is no dropout (then linears reading the same tensor
    share it); a cast copy per adapter where the adapter's dtype differs (peft keeps adapters in
    fp32 on a bf16 base); with dropout, the dropout's output and its mask, per adapter: a one-byte
    mask from CUDA's fused dropout kernel, a mask in the adapter's dtype elsewhere (CPU, meta)."""
    e = torch.finfo(dtype).bits // 8
    total, shared = 0, {}
    for ad in adapters:
        a = torch.finfo(ad.dtype).bits // 8
        if ad.dropout > 0:
            total += tokens * ad.in_features * (a + (1 if device_type == "cuda" else a))
        elif a != e:
            total += tokens * ad.in_features * a
        else:
            shared[_SHARED_INPUT.get(ad.name, ad.name)] = tokens * ad.in_features * a
        total += tokens * ad.rank * a
    return total + sum(shared.values())


def llama_activation_bytes(config, layout, batch: int, seq: int, dtype: torch.dtype, trains_block,
                           adapters_of, device_type: str = "cpu") -> int:
    """Bytes autograd saves in one forward pass of a Llama-style model (eager attention).

    ``trains_block(i)`` says whether the linear weights of block i train (their inputs are then
    saved); ``adapters_of(i)`` lists block i's LoRA adapters. Every activation requires grad because
    something at or before block 0 trains.
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
        else:
            total += adapter_activation_bytes(adapters_of(i), n, dtype, device_type)
    total += norm + n * h * e  # final norm, lm_head input
    total += n * vocab * 4  # log_softmax output of the fp32 loss
    total += 2 * n * d * e + n * 8  # rotary cos/sin, token ids
    return total


@dataclass
class OptimizerTimeline:
    """Per step of a simulated run: gradients, optimizer state alive during forward/backward and after
    the step, and the step's own peak (state + gradients + temporaries)."""

    grads: list[int]
    forward: list[int]
    after: list[int]
    step_peak: list[int]


def simulate_optimizer(method, model: nn.Module, optimizer, steps: int, device_type: str) -> OptimizerTimeline:
    """Run the method's switches for ``steps`` steps on a (meta-device) model and follow which
    parameters hold optimizer state. A parameter gets state when it steps (it requires grad and
    is in one of the optimizer's groups) and keeps it until the method drops it (``optimizer.state.pop``),
    which is how LISA frees the blocks it switches away from. The optimizer steps its groups one
    after the other; each group's new state appears next to that group's temporaries."""
    t = OptimizerTimeline([], [], [], [])
    state = lambda: method.optimizer_state_bytes(list(optimizer.state))  # noqa: E731
    for step in range(steps):
        method.on_step_start(step, model, optimizer)
        t.forward.append(state())
        grads = _nbytes(p for p in model.parameters() if p.requires_grad)
        peak = 0
        for group in optimizer.param_groups:
            stepping = [p for p in group["params"] if p.requires_grad]
            for p in stepping:
                optimizer.state.setdefault(p, {})
            peak = max(peak, state() + method.step_temporary_bytes(stepping, device_type))
        t.grads.append(grads)
        t.after.append(state())
        t.step_peak.append(grads + peak)
    return t


def predict(config, method: str, options: dict | None, batch: int, seq: int, dtype: torch.dtype, steps: int,
            device_type: str = "cpu") -> Prediction:
    """The memory of ``steps`` training steps of a registered method (step 0 is a warm-up, the rest are
    measured). Counts on a meta-device model; nothing is allocated."""
    from transformers import AutoModelForCausalLM

    from ..methods import OptimConfig, build_method

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
    m = build_method(method, options, seed=0)
    model = m.prepare_model(model)
    layout = m.find_blocks(model)
    weights = _nbytes(model.parameters())
    t = simulate_optimizer(m, model, m.build_optimizer(model, OptimConfig(lr=1e-5)), max(1, steps), device_type)
    measured = range(1, steps) if steps > 1 else range(1)
    grads = max(t.grads[s] for s in measured)
    optimizer = max(t.after[s] for s in measured)
    step = max(t.step_peak[s] for s in measured) - optimizer - grads
    # activations: the trainable set of the last step (every step trains the same number of blocks)
    own = lambda i: [p for n, p in model.named_parameters() if layout.block_of.get(n) == i  # noqa: E731
                     and not m.is_adapter(n)]
    trains = lambda i: any(p.requires_grad for p in own(i))  # noqa: E731
    if config.model_type in LLAMA_STYLE:
        activations = llama_activation_bytes(config, layout, batch, seq, dtype, trains,
                                             lambda i: lora_adapters(layout.blocks[i]), device_type)
    else:
        activations = traced_activation_bytes(model, batch, seq)
    return Prediction(weights, grads, optimizer, activations, backward_transient_bytes(config, batch, seq), step,
                      max(t.forward[s] for s in measured))


def traced_activation_bytes(model: nn.Module, batch: int, seq: int) -> int:
    """Bytes autograd saves in one training-mode forward pass (with the loss) of a meta-device
    model: the unique storages handed to the saved-tensor hooks, parameters excluded."""
    counter = SavedTensorCounter(model.parameters())
    model.train()
    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    try:
        with counter.hooks():
            model(input_ids=ids, labels=ids)
    except Exception as exc:  # e.g. a data-dependent operation that the meta device cannot run
        raise BadInput(f"no activation model for {type(model).__name__}: the meta-device trace failed "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); the formula "
                       f"covers model types {', '.join(LLAMA_STYLE)}") from None
    return counter.bytes


def backward_transient_bytes(config, batch: int, seq: int) -> int:
    """Gradients alive next to all activations at the start of backward: of the fp32 log-softmax
    and logits (2 x N x V x 4 B), or of one layer's attention scores and probabilities."""
    heads = config.num_attention_heads
    return max(2 * batch * seq * config.vocab_size * 4, 2 * batch * heads * seq * seq * 4)
