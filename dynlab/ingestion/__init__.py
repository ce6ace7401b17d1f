"""Checkpoints from any framework into the store: readers, discovery, the ingest, the Recorder."""

from dynlab.ingestion._base import Checkpoint
from dynlab.ingestion._detect import FORMATS
from dynlab.ingestion._ingest import IngestReport, Progress, RunReport, ingest
from dynlab.ingestion._readers import open_checkpoint

__all__ = ["FORMATS", "Checkpoint", "IngestReport", "Progress", "RunReport", "ingest",
           "open_checkpoint"]
