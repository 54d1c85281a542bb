"""Reading torch files from a model folder: tensors only, errors a user can act on.

``torch.load(weights_only=True)`` unpickles only tensors and plain containers, so a
planted file cannot run code. When it refuses a file, torch's message advises loading
it with ``weights_only=False`` (running the file's code) and quotes the absolute path:
neither belongs in a reply, so the message is ours and names the file as shown.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from NetworkConfigs.artifacts import ArtifactError, ModelNotFound, shown_path

# torch's message names a refused object "GLOBAL <module.name>" (junk fails with
# "Unsupported operand" instead).
_REFUSED = "GLOBAL "


def read_state_dict(path: Path, model_dir: Path, what: str = "weights file"
                    ) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``path`` (a file of ``model_dir``)."""
    where = shown_path(path, model_dir)
    if not path.is_file():
        raise ModelNotFound(f"{shown_path(model_dir, model_dir)}: {what} {path.name} is "
                            "missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # junk raises whatever the reader hits (struct.error, EOF, ...)
        if isinstance(exc, pickle.UnpicklingError) and _REFUSED in str(exc):
            raise ArtifactError(f"{where}: not a plain {what}: it holds objects other than "
                                "tensors, which are refused (loading them could run code)") \
                from None
        raise ArtifactError(f"{where}: not a readable {what} ({type(exc).__name__})") \
            from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ArtifactError(f"{where}: expected a state dict of tensors; got "
                            f"{type(state).__name__}")
    return state
