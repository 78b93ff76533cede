"""Step functions used by the spine tests through ``step.wrap_params.func_path`` overrides."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from mck.io import save_json, save_npy


def count_calls(output_path: str, item: str, sleep_s: float = 0.0, **kwargs) -> dict:
    """Append one line per call to ``calls.log`` beside the output, then write a valid output file."""
    with open(os.path.join(os.path.dirname(output_path), "calls.log"), "a") as f:
        f.write(f"{item}\n")
    time.sleep(sleep_s)
    save_json(output_path + ".args.json", {"item": item, "args": sorted(kwargs)})
    if output_path.endswith(".npy"):
        save_npy(output_path, np.zeros(3))
    else:
        save_json(output_path, {"item": item})
    return {"called": item}


def explode(output_path: str, item: str, **kwargs) -> None:
    raise RuntimeError(f"boom in {item}")


def resumable_counter(output_path: str, item: str, steps: int = 40, step_s: float = 1.0, **kwargs) -> dict:
    """Count to ``steps``, one step per ``step_s`` seconds, checkpointing after each step; resumes from the
    checkpoint. The output (the list of counted steps and how many starts it took) is the same however often
    the job was interrupted, except ``starts``."""
    ckpt = output_path + ".checkpoint.json"
    state = json.load(open(ckpt)) if os.path.exists(ckpt) else {"done": [], "starts": 0}
    state["starts"] += 1
    save_json(ckpt, state)
    while len(state["done"]) < steps:
        time.sleep(step_s)
        state["done"].append(len(state["done"]))
        save_json(ckpt, state)
    save_json(output_path, {"item": item, "done": state["done"]})
    save_json(output_path + ".starts.json", {"starts": state["starts"]})
    os.remove(ckpt)
    return {"starts": state["starts"]}


def explode_if(output_path: str, item: str, match: str = "", sleep_s: float = 0.0, **kwargs) -> dict:
    """Fail on items whose name contains ``match`` (after ``sleep_s``); otherwise behave like :func:`count_calls`."""
    time.sleep(sleep_s)
    if match and match in item:
        raise RuntimeError(f"boom in {item}")
    return count_calls(output_path, item)
