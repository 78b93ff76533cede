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
