"""The optimizer step taken in backward: each parameter stepped, and its gradient freed, as soon
as backward has accumulated it (PyTorch's "How to save memory by fusing the optimizer step into
the backward pass" tutorial; torchtune's optimizer_in_bwd): at most a few gradients exist at
once instead of the whole model's."""

import torch


class InBackward:
    """What the loop holds as run.optimizer once every parameter steps in backward: one optimizer
    of the run's class per parameter, each stepped by its parameter's post-accumulate-grad hook.
    The loop's step() and zero_grad() have nothing left to do; `template` is the optimizer they
    were made from (what results.csv names), `optimizers` the per-parameter ones (their state is
    the optimizer state the memory tracker follows)."""

    def __init__(self, template):
        self.template = template
        self.optimizers = []
        for group in template.param_groups:
            hyper = {name: value for name, value in group.items() if name != "params"}
            for param in group["params"]:
                if param.requires_grad:
                    self.optimizers.append(self._hooked(param, hyper))
        self.param_groups = [group for opt in self.optimizers for group in opt.param_groups]
        self.defaults = template.defaults

    def _hooked(self, param, hyper):
        optimizer = type(self.template)([{"params": [param], **hyper}])

        def step(param):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        param.register_post_accumulate_grad_hook(step)
        return optimizer

    @property
    def state(self):
        return {param: state for opt in self.optimizers for param, state in opt.state.items()}

    def step(self, closure=None):
        return None  # every parameter stepped in backward

    def zero_grad(self, set_to_none=True):
        return None  # every gradient freed once its parameter stepped


def wrap(optimizer):
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"{type(optimizer).__name__} is no torch.optim.Optimizer: it cannot be made one per parameter")
    return InBackward(optimizer)
