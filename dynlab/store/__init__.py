"""The zarr checkpoint store: runs, committed checkpoints, the append protocol."""

from dynlab.store._run import Run, TensorInfo, check_part, check_predictions_row, find_tensor, step_rows
from dynlab.store._store import Store, check_run_name, open_store

__all__ = ["Run", "Store", "TensorInfo", "check_part", "check_predictions_row", "check_run_name",
           "find_tensor", "open_store", "step_rows"]
