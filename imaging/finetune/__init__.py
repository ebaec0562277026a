"""imaging.finetune: transfer a pretrained encoder to segmentation or classification, with MC dropout.

``models`` (segmenter/classifier, checksum-checked weight transfer, ``load_pretrained_encoder``),
``data`` (person splits, label fractions), ``evaluate`` (Dice per volume, per class, with intervals; QWK, AUROC),
``mc_dropout`` (T stochastic passes → mean, entropy, variance; NIfTI maps), ``early_stopping`` (train until
the validation metric stops improving), ``run`` (one fine-tuning run under the transfer protocol:
``FinetuneConfig``, ``finetune``) and ``efficiency`` (label fractions × seeds × inits → table + plot).
"""

from imaging.finetune.efficiency import run_data_efficiency
from imaging.finetune.mc_dropout import mc_predict, write_uncertainty_maps
from imaging.finetune.models import (
    Classifier,
    TransferError,
    build_classifier,
    build_segmenter,
    load_pretrained_encoder,
    transfer_encoder_weights,
)
from imaging.finetune.run import FinetuneConfig, finetune

__all__ = [
    "Classifier",
    "FinetuneConfig",
    "TransferError",
    "build_classifier",
    "build_segmenter",
    "finetune",
    "load_pretrained_encoder",
    "mc_predict",
    "run_data_efficiency",
    "transfer_encoder_weights",
    "write_uncertainty_maps",
]
