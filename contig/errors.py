"""contig's own error: a manifest, run folder, split, demo folder or benchmark that cannot be used.

The command line reports every ``ContigError`` (like ``GeneticsError`` and ``ImagingError``) as one
``error: ...`` line with exit code 2; messages name the file or value and what to do.
"""

from __future__ import annotations


class ContigError(Exception):
    """Bad input to contig's own layer (multimodal dataset, pretraining runs, embeddings, the demo)."""


__all__ = ["ContigError"]
