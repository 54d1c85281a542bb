"""Torch helpers that are not a network: device choice, seeding and Gumbel noise.

Shared by every torch model type (PPO's algorithm and network, the Transformer trainer),
so none of them imports another type's network module for a utility.
"""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global generator (env randomness is seeded separately)."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def gumbel_noise(shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """Gumbel(0, 1) noise ``-log E``, ``E ~ Exp(1)``, from torch's generator.

    The Gumbel-max trick: ``argmax(log p + g)`` over the last axis is a draw from the
    categorical ``p`` (``torch.multinomial`` draws one sample the same way, as an
    exponential race). Drawing a rollout's noise at once saves ops on every step.
    """
    return -torch.empty(shape, device=device).exponential_().log()


def set_threads(threads: int) -> None:
    """Let torch use ``threads`` CPU threads for its operations. More threads than the
    cores left free by other processes make every step wait on the slowest thread (a
    Transformer smoke training took 6x longer with a second busy process), so each
    training takes the budget it is given (run_training's ``--threads``)."""
    torch.set_num_threads(threads)
