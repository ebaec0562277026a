"""Image simulators with known truth, for tests, benchmarks and the synthetic biobank.

- ``fundus``: colour fundus photographs rendered from latent traits (``render_fundus``);
- ``mri``: 3D brain MRI (T1, T2, FLAIR) with tissue and lesion labels (``render_mri``);
- ``bitewing``: dental bitewing radiographs with caries lesions, masks and mimics (``simulate_bitewings``).

How each is drawn and what its parameters mean: docs/synthetic_images.md.
"""
