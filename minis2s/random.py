"""minis2s's one random generator (weight init, dropout masks), seeded like ``torch.manual_seed``.

Its state is plain JSON-able data, so a checkpoint can save it and a resumed run can replay
exactly the same dropout masks.
"""
import numpy as np

_RNG = [np.random.default_rng(0)]


def manual_seed(seed: int) -> np.random.Generator:
    _RNG[0] = np.random.default_rng(seed)
    return _RNG[0]


def default_rng() -> np.random.Generator:
    return _RNG[0]


def get_rng_state() -> dict:
    return _RNG[0].bit_generator.state


def set_rng_state(state: dict) -> None:
    _RNG[0].bit_generator.state = state
