"""The zarr checkpoint store: runs, committed checkpoints, the append protocol."""

from dynlab.store._probe import OUTPUTS as PROBE_OUTPUTS
from dynlab.store._probe import (
    check_activations_row,
    check_layer_name,
    check_predictions_row,
    check_probe_layers,
)
from dynlab.store._run import Run, TensorInfo, check_part, find_tensor, step_rows
from dynlab.store._store import Store, check_run_name, open_store

__all__ = ["PROBE_OUTPUTS", "Run", "Store", "TensorInfo", "check_activations_row", "check_layer_name",
           "check_part", "check_predictions_row", "check_probe_layers", "check_run_name",
           "find_tensor", "open_store", "step_rows"]
