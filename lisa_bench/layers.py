"""Find a causal LM's decoder blocks without a per-architecture table.

The decoder blocks are the largest ``nn.ModuleList`` whose children are all of one class
(Llama/Mistral/Qwen2/Gemma ``model.layers``, GPT-2 ``transformer.h``, Phi, ...). Everything
outside the blocks (embeddings, final norm, LM head) is what LISA always trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import BadInput


@dataclass
class LayerLayout:
    blocks_path: str
    blocks: nn.ModuleList
    # parameter name -> block index, for parameters inside a block
    block_of: dict[str, int]

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def block_params(self, model: nn.Module, indices) -> list[nn.Parameter]:
        """The parameters of the given blocks, in model order (read from the blocks themselves: a walk over the
        whole model per block costs minutes on a 70B model's meta copy; decoder blocks share no tensors)."""
        return [p for i in sorted(set(indices)) for p in self.blocks[i].parameters()]

    def outside_params(self, model: nn.Module) -> list[nn.Parameter]:
        """Embedding, final norm, LM head (a tied embedding/head counts once)."""
        return [p for n, p in model.named_parameters() if n not in self.block_of]

    def outside_units(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """The parameters outside the blocks by unit: ``embedding`` (the input embedding) and ``head`` (the LM
        head with the final norm and anything else after the blocks). A tied embedding/head is in both."""
        emb = model.get_input_embeddings()
        emb_ids = {id(p) for p in emb.parameters()} if emb is not None else set()
        outside = self.outside_params(model)
        head = model.get_output_embeddings()
        head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        return {"embedding": [p for p in outside if id(p) in emb_ids],
                "head": [p for p in outside if id(p) not in emb_ids or id(p) in head_ids]}


def _resolve_attribute(model: nn.Module, path: str) -> nn.Module:
    obj = model
    for part in path.split("."):
        if not hasattr(obj, part):
            raise BadInput(f"layers_attribute {path!r} does not exist on {type(model).__name__} "
                           f"(no attribute {part!r}); give the dotted path of the decoder-block ModuleList")
        obj = getattr(obj, part)
    if not isinstance(obj, nn.ModuleList) or len(obj) == 0:
        raise BadInput(f"layers_attribute {path!r} is a {type(obj).__name__}, not a non-empty ModuleList of decoder blocks")
    return obj


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def find_blocks(model: nn.Module, layers_attribute: str | None = None) -> LayerLayout:
    if layers_attribute:
        blocks = _resolve_attribute(model, layers_attribute)
        path = layers_attribute
    else:
        candidates = []
        for name, module in model.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) > 0:
                kinds = {type(child) for child in module}
                if len(kinds) == 1 and _n_params(module) > 0:
                    candidates.append((_n_params(module), name, module))
        if not candidates:
            raise BadInput(f"no decoder blocks found in {type(model).__name__} (no ModuleList of identical "
                           f"blocks); set the method option layers_attribute to their dotted path, "
                           f"e.g. 'model.layers'")
        _, path, blocks = max(candidates, key=lambda c: c[0])
    prefix = {id(block): i for i, block in enumerate(blocks)}
    block_of: dict[str, int] = {}
    for name, module in model.named_modules():
        if id(module) in prefix:
            idx = prefix[id(module)]
            for pname, _ in module.named_parameters():
                block_of[f"{name}.{pname}" if name else pname] = idx
    # named_parameters() de-duplicates shared tensors; keep only names it reports
    reported = {n for n, _ in model.named_parameters()}
    block_of = {n: i for n, i in block_of.items() if n in reported}
    return LayerLayout(path, blocks, block_of)


def layer_units(model: nn.Module, layout: LayerLayout) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """Group parameters into the units the weight-norm analysis reports, in model order:
    ``embedding``, ``layer.0`` ... ``layer.N-1``, then the rest (``norm``, ``head``, ...)."""
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    emb_ids = {id(p) for p in emb.parameters()} if emb is not None else set()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    units: dict[str, list] = {"embedding": []}
    units.update({f"layer.{i}": [] for i in range(layout.num_blocks)})
    units["other"] = []
    units["head"] = []
    for name, p in model.named_parameters():
        if name in layout.block_of:
            units[f"layer.{layout.block_of[name]}"].append((name, p))
        elif id(p) in emb_ids:
            units["embedding"].append((name, p))
        elif id(p) in head_ids:
            units["head"].append((name, p))
        else:
            units["other"].append((name, p))
    return {k: v for k, v in units.items() if v}
