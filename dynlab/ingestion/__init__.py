"""Checkpoints from any framework into the store: readers, discovery, the ingest, the Recorder,
and the probe (every checkpoint through the user's model on a fixed probe set)."""

from dynlab.ingestion._base import Checkpoint
from dynlab.ingestion._detect import FORMATS
from dynlab.ingestion._ingest import IngestReport, Progress, RunReport, ingest
from dynlab.ingestion._layers import describe_layers
from dynlab.ingestion._probe import ProbeProgress, ProbeReport, ProbeRunReport, layer_inputs, probe
from dynlab.ingestion._readers import open_checkpoint

__all__ = ["FORMATS", "Checkpoint", "IngestReport", "ProbeProgress", "ProbeReport", "ProbeRunReport",
           "Progress", "RunReport", "describe_layers", "ingest", "layer_inputs", "open_checkpoint",
           "probe"]
