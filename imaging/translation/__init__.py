"""imaging.translation: cross-modal image synthesis (pix2pix for registered pairs, CycleGAN otherwise).

``networks`` (U-Net generator, PatchGAN discriminator, 2D/3D), ``models`` (``Pix2Pix``, ``CycleGAN``:
forward returns one training loss for the generic trainer), ``data`` (paired/unpaired volumes from a
biobank manifest) and ``runner`` (rebuild a trained model, write synthetic NIfTI volumes). The synthetic
modality serves puzzle pretraining (``imaging.puzzle``) when a real one is missing.
"""

from imaging.translation.models import CycleGAN, Pix2Pix, create_translation_model
from imaging.translation.networks import PatchDiscriminator, UNetGenerator
from imaging.translation.train import TranslateConfig, train_translation

__all__ = [
    "CycleGAN",
    "PatchDiscriminator",
    "Pix2Pix",
    "TranslateConfig",
    "UNetGenerator",
    "create_translation_model",
    "train_translation",
]
