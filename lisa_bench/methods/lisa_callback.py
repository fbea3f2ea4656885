"""The widely copied callback form of LISA (LMFlow's DynamicLayerActivationCallback, axolotl).

Kept as a reference baseline so the suite shows the difference: every ``interval`` steps it
flips ``requires_grad`` on the sampled blocks and never touches the optimizer, which was built
over all parameters. The AdamW state of every block ever sampled therefore stays in memory and
stale moments are reused when a block is sampled again (LMFlow issue 768). The schedule is the
same as ``lisa``'s for the same seed.
"""

from .base import register
from .lisa import Lisa


@register("lisa-callback")
class LisaCallback(Lisa):
    def build_optimizer(self, model, optim):
        super().build_optimizer(model, optim)  # starts the sampler
        return optim.adamw(list(model.parameters()))

    def switch(self, model, optimizer, new_active, step=None):  # keeps every state: nothing to write back
        for p in self.layout.block_params(model, self.active):
            p.requires_grad_(False)
        for p in self.layout.block_params(model, new_active):
            p.requires_grad_(True)
        self.active = list(new_active)
