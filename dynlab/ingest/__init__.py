"""Checkpoints from any framework into the store: readers, discovery, the ingest, the Recorder."""

from dynlab.ingest._base import Checkpoint
from dynlab.ingest._detect import FORMATS
from dynlab.ingest._ingest import IngestReport, Progress, RunReport, ingest
from dynlab.ingest._readers import open_checkpoint

__all__ = ["FORMATS", "Checkpoint", "IngestReport", "Progress", "RunReport", "ingest",
           "open_checkpoint"]
