"""Activations: the bytes autograd keeps from the forward pass for backward.

For Llama-style models (Llama, Mistral) a closed-form count per token and block, for every precision
(fp32, pure bf16, bf16 autocast), attention implementation (eager, sdpa, flash-attention) and with or
without gradient checkpointing, given which weights train and where peft LoRA adapters sit; checked
tensor by tensor against what autograd saves on the CPU (tests/memory/test_activations.py). Other
architectures (GPT-2, ...) are traced: one forward pass on the meta device, counting the storages
autograd saves, which allocates nothing (eager attention, no autocast, no checkpointing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BadInput
from .accounting import SavedTensorCounter

LLAMA_STYLE = ("llama", "mistral")  # model types the formula covers


@dataclass(frozen=True)
class Compute:
    """How the forward pass computes, as far as what it saves depends on it."""

    storage: int = 4  # bytes per element of the parameters and of the residual stream
    compute: int = 4  # bytes per element of matmul inputs and outputs (2 under bf16 autocast)
    autocast: bool = False  # matmuls cast their inputs and weights to the compute dtype
    attention: str = "eager"  # eager | sdpa | flash_attention_2
    checkpointing: bool = False  # each decoder block recomputed in backward from its input
    device_type: str = "cpu"

    @classmethod
    def of(cls, precision, attention: str = "eager", checkpointing: bool = False,
           device_type: str = "cpu") -> "Compute":
        storage = torch.finfo(precision.weights).bits // 8
        compute = torch.finfo(precision.autocast_dtype).bits // 8 if precision.autocast_dtype else storage
        return cls(storage, compute, precision.autocast_dtype is not None, attention, checkpointing, device_type)


@dataclass(frozen=True)
class Adapter:
    """A peft LoRA adapter on one linear layer, as the activation count needs it."""

    name: str  # the adapted module's own name (q_proj, ...)
    in_features: int
    out_features: int
    rank: int
    dropout: float
    bytes: int  # bytes per element of the adapter's weights


def lora_adapters(block: nn.Module) -> list[Adapter]:
    """The peft LoRA adapters in one decoder block (read from the model's structure)."""
    from peft.tuners.lora import LoraLayer

    found = []
    for name, m in block.named_modules():
        if isinstance(m, LoraLayer) and m.active_adapters and m.active_adapters[0] in m.lora_A:
            key = m.active_adapters[0]
            drop = m.lora_dropout[key]
            found.append(Adapter(name.rsplit(".", 1)[-1], m.in_features, m.out_features, m.r[key],
                                 drop.p if isinstance(drop, nn.Dropout) else 0.0, m.lora_A[key].weight.element_size()))
    return found


# linears of a Llama block that read the same input tensor
_SHARED_INPUT = {"q_proj": "attention", "k_proj": "attention", "v_proj": "attention", "gate_proj": "mlp",
                 "up_proj": "mlp"}
_ATTENTION_INPUT = ("q_proj", "k_proj", "v_proj")


def adapter_bytes(adapters: list[Adapter], tokens: int, c: Compute, input_grad: bool) -> int:
    """What peft's LoRA saves in a block whose own weights are frozen. Each adapter saves the input of
    its ``lora_A`` and the output of ``lora_A``. That input is the layer's input itself where dtypes
    agree, without dropout and autocast (then linears reading the same tensor share it); a copy per
    adapter otherwise (cast to the adapter's dtype, or to the compute dtype under autocast); with
    dropout, also its mask: one byte from CUDA's fused kernel, the input's dtype elsewhere. Under
    autocast the adapters' weights are cast too, and kept where their input needs a gradient.
    ``input_grad``: whether the block's attention input needs a gradient (not in the first block
    when nothing before it trains)."""
    total, shared = 0, {}
    for ad in adapters:
        grad_in = input_grad or ad.name not in _ATTENTION_INPUT
        if ad.dropout > 0 and grad_in:
            total += tokens * ad.in_features * (1 if c.device_type == "cuda" else ad.bytes)  # the mask
        if c.autocast:
            total += tokens * ad.in_features * c.compute  # lora_A's input, cast
            total += ad.rank * ad.out_features * c.compute + (ad.in_features * ad.rank * c.compute if grad_in else 0)
        elif ad.dropout > 0 or ad.bytes != c.storage:
            total += tokens * ad.in_features * ad.bytes  # the dropout's output, or a cast copy
        elif not (ad.name == "o_proj" and c.attention != "eager"):  # fused attention: o's input is its output
            shared[_SHARED_INPUT.get(ad.name, ad.name)] = tokens * ad.in_features * ad.bytes
        total += tokens * ad.rank * (c.compute if c.autocast else ad.bytes)  # lora_A's output
    return total + sum(shared.values())


def llama_activation_bytes(config, num_blocks: int, batch: int, seq: int, c: Compute, trains_block, adapters_of,
                           outside_trains: dict[str, bool], norms_train=None) -> tuple[int, int]:
    """Bytes autograd saves in one forward pass of a Llama-style model, and the largest block's share.
    Under gradient checkpointing every block's input is kept and one block's activations are rebuilt at a
    time in backward: the count is the inputs, what lies outside the blocks, and the largest block.

    ``trains_block(i)``: whether block i's own linear weights train (their inputs are then saved), and
    ``norms_train(i)`` whether its norm weights do;
    ``adapters_of(i)``: block i's LoRA adapters; ``outside_trains``: whether the ``embedding``, the
    final ``norm`` and the ``head`` train. A block saves nothing until something at or before it trains.
    """
    n = batch * seq
    h, inter, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    d = getattr(config, "head_dim", None) or h // heads
    s, e = c.storage, c.compute
    norm = n * h * 4 + n * 4  # each RMSNorm: its float32 input (a copy unless already fp32) and rsqrt
    if c.attention == "eager":  # q and the repeated k, v for the matmuls; fp32 softmax out (+ its cast)
        attention = 3 * n * heads * d * e + batch * heads * seq * seq * (4 + (e if e != 4 else 0))
    else:  # fused kernels: q and output, k and v at their own head count, the fp32 log-sum-exp
        attention = 2 * n * heads * d * e + 2 * n * kv * d * e + batch * heads * seq * 4
    mlp = 3 * n * inter * e  # gate, up, act(gate)
    linears = {"q": h * heads * d, "k": h * kv * d, "v": h * kv * d, "o": heads * d * h, "mlp": 3 * h * inter}
    grad_in = outside_trains["embedding"]  # does the residual stream into this block need a gradient?
    blocks, largest, inputs = 0, 0, 0
    norms_train = norms_train or trains_block
    for i in range(num_blocks):
        adapters, trains, norms = adapters_of(i), trains_block(i), norms_train(i)
        if not (grad_in or trains or norms or adapters):
            continue
        block = norm + attention + norm + mlp
        if not grad_in and not trains and not norms:  # the first adapted block: its attention input needs no gradient
            block -= norm
        if trains:  # the inputs of the linears
            copies = 5 if c.autocast else 2  # q/k/v and gate/up: one cast copy each, or one shared input
            o_input = n * heads * d * e if c.attention == "eager" else 0  # fused attention: its own output
            block += copies * n * h * e + o_input + n * inter * e
        else:
            block += adapter_bytes(adapters, n, c, grad_in or norms)
        if norms:  # the inputs of the two norms' weights
            block += 2 * n * h * s
        if c.autocast:  # bf16 copies of the weights whose input needs a gradient
            qkv = linears["q"] + linears["k"] + linears["v"]
            block += e * (sum(linears.values()) - (0 if grad_in or trains else qkv))
        blocks += block
        largest = max(largest, block)
        inputs += n * h * s
        grad_in = True
    if c.checkpointing:  # block inputs kept; in backward one block's activations exist at a time
        blocks = inputs + largest
    total = blocks
    if grad_in:
        total += norm + (n * h * s if outside_trains["norm"] else 0)  # final norm (+ its weight's input)
        total += 2 * n * d * s  # rotary cos/sin
    if outside_trains["head"]:
        total += n * h * e  # lm_head's input
    if c.autocast and grad_in:
        total += e * h * config.vocab_size  # lm_head's weight, cast
    total += n * config.vocab_size * 4  # log_softmax output of the fp32 loss
    total += 2 * n * 8 + 8  # token ids and labels; the loss's divisor (the step's target tokens, a 0-d int64)
    return total, largest


def _unpacked_batches():
    """Without a cache or an attention mask, transformers looks at the position ids to see whether several
    sequences are packed into one row: a question about values, which the meta device cannot answer. The
    traced batch is plain rows (positions 0..seq-1), so the answer is "not packed"."""
    import contextlib
    from unittest import mock

    try:
        from transformers import masking_utils
    except ImportError:
        return contextlib.nullcontext()
    if not hasattr(masking_utils, "find_packed_sequence_indices"):
        return contextlib.nullcontext()
    return mock.patch.object(masking_utils, "find_packed_sequence_indices", lambda position_ids: None)


def traced_activation_bytes(model: nn.Module, batch: int, seq: int) -> int:
    """Bytes autograd saves in one training-mode forward pass (with the loss) of a meta-device
    model: the unique storages handed to the saved-tensor hooks, parameters excluded."""
    counter = SavedTensorCounter(model.parameters())
    model.train()
    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    targets = torch.zeros((), dtype=torch.long, device="meta")
    try:
        with counter.hooks(), _unpacked_batches():  # as the loop's train_step runs it: no KV cache, the loss
            # divided by the step's count of target tokens
            model(input_ids=ids, labels=ids, use_cache=False, num_items_in_batch=targets)
    except Exception as exc:  # e.g. a data-dependent operation that the meta device cannot run
        raise BadInput(f"no activation model for {type(model).__name__}: the meta-device trace failed "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); the formula "
                       f"covers model types {', '.join(LLAMA_STYLE)}") from None
    return counter.bytes


def backward_transient_bytes(config, batch: int, seq: int, c: Compute, largest_block: int = 0) -> int:
    """Gradients alive next to all activations at the start of backward: of the fp32 log-softmax
    and logits (2 x N x V x 4 B), or of one layer's attention scores and probabilities (eager). Under
    gradient checkpointing a block is rebuilt only after the logits' gradients are gone, so the two
    take turns: the count (which already holds the largest block) adds only what the logits need more."""
    logits = 2 * batch * seq * config.vocab_size * 4
    attention = 2 * batch * config.num_attention_heads * seq * seq * 4 if c.attention == "eager" else 0
    if c.checkpointing:
        return max(logits - largest_block, attention)
    return max(logits, attention)
