"""Several optimizers of disjoint parameters behind one optimizer face, for the loop and the lr
scheduler: Muon's two (methods/muon.py) and layer-wise updates' one per parameter
(methods/layerwise.py)."""

from collections.abc import Mapping

import torch


class _StateOf(Mapping):
    """parameter -> its state in whichever optimizer holds it, read live (loading a state dict
    replaces an optimizer's state dict object)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self._optimizers = optimizers

    def __getitem__(self, parameter):
        for optimizer in self._optimizers:
            if parameter in optimizer.state:
                return optimizer.state[parameter]
        raise KeyError(parameter)

    def __iter__(self):
        return (p for optimizer in self._optimizers for p in optimizer.state)

    def __len__(self):
        return sum(len(optimizer.state) for optimizer in self._optimizers)


class CombinedOptimizer(torch.optim.Optimizer):
    """Optimizers of disjoint parameters behind one face: param_groups are all of theirs (the lr
    scheduler sets each group's lr in place), state reads through to them, and step, zero_grad
    and state_dict go to each."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        super().__init__([p for o in optimizers for group in o.param_groups for p in group["params"]], {})
        self._optimizers = optimizers
        self._face_their_groups()
        self.state = _StateOf(optimizers)

    @torch.no_grad()
    def step(self, closure=None):
        for optimizer in self._optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True):
        for optimizer in self._optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"per_optimizer": [optimizer.state_dict() for optimizer in self._optimizers]}

    def load_state_dict(self, state_dict: dict):
        for optimizer, saved in zip(self._optimizers, state_dict["per_optimizer"], strict=True):
            optimizer.load_state_dict(saved)
        # Loading replaces each optimizer's group dicts: face the new ones, or the lr scheduler
        # would set the learning rate on groups no optimizer reads any more.
        self._face_their_groups()

    def _face_their_groups(self):
        """The same group dicts as the optimizers': setting lr here sets it there."""
        self.param_groups = [group for optimizer in self._optimizers for group in optimizer.param_groups]
