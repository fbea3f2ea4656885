"""SGD with momentum on every parameter: a baseline defined outside the lisa-bench package.

One file that registers a method, and one experiment file that names it (``sgd-full.yaml``): training,
the memory table, the tables and the figures of a pipeline run need nothing else.
"""

import torch

from lisa_bench.methods import register
from lisa_bench.methods.base import state_size
from lisa_bench.methods.full import FullFineTuning


@register("sgd-full")
class SGDFull(FullFineTuning):
    quick_test = {"lr": 1e-2}  # settings for the test suite's short run on the tiny model
    own_optimizer = "torch.optim.SGD"  # not AdamW: bf16-kahan, which replaces AdamW, refuses it with this name

    def build_optimizer(self, model, optim):
        return torch.optim.SGD(self.trainable_parameters(model), lr=optim.lr, momentum=0.9)

    def optimizer_state_bytes(self, params, state_dtype=None):
        # one momentum buffer per parameter, in state_dtype (fp32 when bf16-master steps fp32 masters; None: the
        # parameter's own dtype); torch's SGD keeps no step counter
        return sum(p.numel() * state_size(p, state_dtype) for p in params)

    def step_temporary_bytes(self, params, device_type):
        return 0  # the momentum and the update are applied in place
