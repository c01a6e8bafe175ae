"""Whether a run may mirror its images: one decision that flip augmentation, flip test-time
augmentation and the run's records all read.

Two statements decide it. The data set's (`mirror_safe` in its manifest: `digits`, or an
import with `--no-mirror`, say a mirrored image may belong to another class; a manifest without
the key, written before it existed, reads as mirror-safe) and the person's (`hflip=0` says the
same for this run). Either one turns every flip off: training batches are not flipped, and
validation and test are not averaged with their mirrors, so the model is never asked to treat
an image and its mirror alike. Asking for flips on a set declared not mirror-safe (the presets
do, with hflip=0.5) is not refused: the declaration wins and the run's notes say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lab.config import RunConfig


@dataclass(frozen=True)
class Mirror:
    """A run's mirror decision and what it switches."""

    ok: bool  # mirroring keeps every label
    reason: str  # why, for the notes and the records
    hflip: float  # flip probability of the training batches (0 when not ok or no augmentation)
    tta: bool  # validation and test average each image's logits with its mirror's
    note: str | None = None  # a line for the run's notes when a flip asked for is turned off

    def record(self) -> dict[str, Any]:
        """What `result.json` and the start event hold under "mirror"."""
        return {k: v for k, v in asdict(self).items() if k != "note"}


def declared_mirror_safe(manifest: Mapping[str, Any]) -> bool:
    """The data set's own statement; manifests older than the key read as mirror-safe."""
    return manifest.get("mirror_safe", True) is not False


def decide_mirror(config: RunConfig, manifest: Mapping[str, Any]) -> Mirror:
    """The one mirror decision of a run on the data set that `manifest` describes."""
    name = manifest.get("name", "the data set")
    if not declared_mirror_safe(manifest):
        ok, reason = False, f"{name} classes are not mirror-symmetric"
    elif config.hflip == 0:
        ok, reason = False, "hflip=0: mirroring may change the class"
    else:
        ok, reason = True, f"{name} is mirror-safe and hflip={config.hflip:g}"
    hflip = config.hflip if ok and config.augment else 0.0
    tta = ok and config.tta_flip
    # What the config asked for and does not get (flips the person switched off themselves,
    # with hflip=0, are not news).
    lost = [what for what, asked in (
        ("horizontal flip", config.augment and config.hflip > 0 and not ok),
        ("flip TTA", config.tta_flip and not tta)) if asked]
    note = f"{' and '.join(lost)} off: {reason}" if lost else None
    return Mirror(ok, reason, hflip, tta, note)
