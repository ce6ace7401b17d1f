"""From the paths a user gives to runs and their checkpoints.

- A file is one checkpoint. Files given together form one run, named ``--run`` or after their
  directory.
- A directory that holds checkpoints (files, or Hugging Face ``checkpoint-N/`` directories) is one
  run, named after the directory.
- A directory with no checkpoints of its own whose sub-directories hold checkpoints is several
  runs, one per sub-directory.
- A directory that is itself one Hugging Face checkpoint (``model.safetensors``, an index of shards,
  ``pytorch_model.bin``) is one checkpoint.

In a directory only files with checkpoint extensions are candidates; everything else (configs,
tokenizers, notes, sidecars) is skipped, and the skip list is reported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dynlab.errors import CheckpointError
from dynlab.ingestion._detect import CHECKPOINT_SUFFIXES, sniff
from dynlab.store import check_run_name

SIDECARS = ("metrics.csv", "metrics.jsonl")
_HF_CHECKPOINT_NAME = re.compile(r"^checkpoint[-_]?\d+$")
_HF_SINGLE = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "tf_model.h5")
_HF_INDEX = ("*.safetensors.index.json", "pytorch_model.bin.index.json")
_INTEGER = re.compile(r"\d+")
#: The final ``save_model()`` files a Trainer leaves beside its ``checkpoint-N/`` directories: not
#: a checkpoint of the run (no step of its own), so skipped there.
_HF_FINAL_MODEL = re.compile(r"(model|pytorch_model|adapter_model|tf_model)(-\d+-of-\d+)?")


@dataclass
class RunSource:
    """One run found on disk: its name, its directory, checkpoint units and skipped files."""

    name: str
    root: Path
    units: list[Path]
    skipped: list[Path] = field(default_factory=list)

    @property
    def sidecar(self) -> Path | None:
        for name in SIDECARS:
            if (self.root / name).is_file():
                return self.root / name
        return None


def is_hf_checkpoint_dir(path: Path) -> bool:
    """A directory holding the weight files of one checkpoint (Hugging Face layout)."""
    if not path.is_dir():
        return False
    if any((path / n).is_file() for n in _HF_SINGLE) or any(any(path.glob(p)) for p in _HF_INDEX):
        return True
    has_weights = any(p.suffix in (".safetensors", ".bin") for p in path.iterdir() if p.is_file())
    return has_weights and (_HF_CHECKPOINT_NAME.match(path.name) is not None
                            or (path / "trainer_state.json").is_file())


def _is_single_checkpoint_dir(path: Path) -> bool:
    """One HF checkpoint, not a Trainer output directory holding ``checkpoint-N/`` beside it."""
    return is_hf_checkpoint_dir(path) and not any(
        q.is_dir() and is_hf_checkpoint_dir(q) for q in path.iterdir())


def step_from_name(path: Path) -> int | None:
    """The last integer in a file's stem (``ckpt_epoch3_step1200.pt`` → 1200) or a directory's name."""
    stem = path.name if path.is_dir() else path.name.split(".")[0]
    numbers = _INTEGER.findall(stem)
    return int(numbers[-1]) if numbers else None


def _candidates(directory: Path) -> tuple[list[Path], list[Path]]:
    units: list[Path] = []
    skipped: list[Path] = []
    entries = sorted(directory.iterdir())
    hf_subdirs = [p for p in entries if p.is_dir() and is_hf_checkpoint_dir(p)]
    for p in entries:
        if p.name.startswith(".") or p.name in SIDECARS:
            continue
        if p.is_dir():
            if p in hf_subdirs:
                units.append(p)
        elif p.suffix.lower() in CHECKPOINT_SUFFIXES and not (
                hf_subdirs and _HF_FINAL_MODEL.fullmatch(p.name.split(".")[0])) and not (
                p.suffix.lower() == ".bin" and sniff(p) is None):  # e.g. ONNX external data
            units.append(p)
        else:
            skipped.append(p)
    return units, skipped


def discover(sources: Sequence[str | Path], run: str | None = None) -> list[RunSource]:
    """Resolve the user's paths to runs. Raises :class:`CheckpointError` naming the bad path."""
    if not sources:
        raise CheckpointError("no checkpoint path given")
    paths = [Path(s) for s in sources]
    for p in paths:
        if not p.exists():
            raise CheckpointError(f"{p}: no such file or directory")
    files = [p for p in paths if p.is_file() or _is_single_checkpoint_dir(p)]
    dirs = [p for p in paths if p not in files]
    runs: list[RunSource] = []
    if files:
        root = files[0].resolve().parent
        runs.append(RunSource(run or _run_name(root), root, [f.resolve() for f in files]))
    for d in dirs:
        units, skipped = _candidates(d)
        if units:
            runs.append(RunSource(run or _run_name(d.resolve()), d.resolve(), units, skipped))
            continue
        subruns = []
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            sub_units, sub_skipped = _candidates(sub)
            if sub_units:
                subruns.append(RunSource(_run_name(sub.resolve()), sub.resolve(), sub_units,
                                         sub_skipped))
        if not subruns:
            raise CheckpointError(
                f"{d}: no checkpoints found (looked for {', '.join(sorted(CHECKPOINT_SUFFIXES))} "
                "files and Hugging Face checkpoint directories)")
        if run is not None and len(subruns) > 1:
            raise CheckpointError(f"{d}: holds {len(subruns)} runs, but --run names one; "
                                  "omit --run to name each run after its directory")
        if run is not None:
            subruns[0].name = run
        runs.extend(subruns)
    names = [r.name for r in runs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise CheckpointError(f"two sources map to the same run name '{sorted(dup)[0]}'; "
                              "ingest them separately with --run")
    return runs


def _run_name(directory: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.=+-]", "_", directory.name).lstrip(".-") or "run"
    check_run_name(name)
    return name
