"""imaging.puzzle: multimodal jigsaw puzzles solved with the Sinkhorn operator (Taleb et al., IPMI 2021).

``sinkhorn`` (log-space Gumbel-Sinkhorn, Hungarian decoding), ``tiles`` (vectorised grid cutting, modality
picking and shuffling), ``task`` (the ``"puzzle"`` proxy task) and ``data`` (co-registered multimodal
volumes from a biobank manifest or rendered in memory).
"""

from imaging.puzzle.sinkhorn import hungarian, log_sinkhorn, permutation_matrix, sample_gumbel, sinkhorn

__all__ = ["hungarian", "log_sinkhorn", "permutation_matrix", "sample_gumbel", "sinkhorn"]
