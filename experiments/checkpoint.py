"""A run's checkpoint: everything it needs to continue as if it had never stopped.

Batches are a pure function of (seed, step), so besides model and optimizer the checkpoint holds
the step, the task's own state and every random generator that dropout or random units draw
from (torch CPU and CUDA, Python, NumPy). It is written atomically (temp + fsync + rename), so a
run killed mid-save keeps its previous checkpoint, and read with ``weights_only=True``, so
loading one never runs pickled code: every value in it is a tensor, number, string or container.
"""

from __future__ import annotations

import io
import pickle
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from experiments.rundir import atomic_write

if TYPE_CHECKING:
    from experiments.components import Components


def rng_state() -> dict[str, Any]:
    """Every global random generator's state, as plain tensors and numbers."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )


def capture(parts: Components, step: int, **extra: Any) -> dict[str, Any]:
    """The state of ``parts`` after ``step`` steps, with the random generators and ``extra``
    (the trainer's clocks, loss window and config), ready for ``save``."""
    return {
        "step": step,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "task": parts.task.state_dict(),
        "rng": rng_state(),
        **extra,
    }


def restore(parts: Components, state: dict[str, Any]) -> None:
    """Put ``capture``'s model, optimizer, task and generator states back into ``parts``."""
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.task.load_state_dict(state["task"])
    set_rng_state(state["rng"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Serialise in memory first, then write atomically: the old checkpoint survives a kill."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted to resume from; the message is one line."""


#: what ``load`` itself reads; a file without it was not written by ``save``'s callers.
REQUIRED_KEYS = ("rng",)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    """Tensors come back on ``device``; RNG states are moved back to the CPU where they live.

    A damaged or foreign file fails in one line naming it and the way out, never with torch's
    multi-line loader message (which suggests weights_only=False, i.e. running its code).
    """
    way_out = "delete it, or pass trainer.resume=false to start the run over"
    try:
        with warnings.catch_warnings():  # torch warns about a foreign file's pickle protocol
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # weights_only met an object it will not build
        raise CheckpointError(
            f"checkpoint {path} holds pickled objects other than tensors, numbers and strings "
            f"(or is corrupted); refused without running them; {way_out}"
        ) from None
    except Exception as err:  # torch reports damage as RuntimeError, EOFError, KeyError, ...
        reason = (str(err).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"checkpoint {path} is corrupted or truncated ({type(err).__name__}: {reason}); "
            f"{way_out}"
        ) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is not an actlab checkpoint (no {', '.join(missing)}); {way_out}"
        )
    rng = state["rng"]
    rng["torch"] = rng["torch"].cpu()
    rng["cuda"] = [s.cpu() for s in rng["cuda"]]
    rng["numpy"]["key"] = rng["numpy"]["key"].cpu()
    return state
