"""``contig explain``: which genetic inputs drive the image ↔ genetics alignment (integrated gradients).

For person p with genetic input x_p (modality m) the explained quantity is the genetics → image InfoNCE
loss of p against a reference batch: p's own image embedding (mean over p's images) is the positive, the
reference people's image embeddings are the negatives,

    L_p(x) = −log softmax_j( s · cos(g(x), v_j) )[own],   v = [image_p, reference_1 … reference_K].

The reference people never include p (p's own image would otherwise also be a negative of p).
Image embeddings are the run's image head for modality m (one head per modality).

Integrated gradients (Sundararajan et al. 2017) from the mean-dosage baseline b (the training mean of
every input; 0 for standardised inputs):

    IG_p = (x_p − b) ⊙ (1/S) Σ_s ∇L_p(b + α_s (x_p − b)),   α_s = (s + ½)/S   (midpoint rule),

so Σ_f IG_pf ≈ L_p(x_p) − L_p(b) (completeness; the error shrinks as S grows). All S·P interpolated
inputs of a chunk go through the tower as one batch: no Python loop over people. A negative attribution
lowers the loss, i.e. pulls p's genetics towards p's own image.

Outputs per modality: ``top_<m>.tsv`` (features ranked by mean |IG| over people), ``people_<m>.tsv``
(each person's top features), ``attributions_<m>.parquet`` (people × features) and ``top_<m>.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from contig.dataset import read_manifest
from contig.embed import embed_images, load_run
from contig.errors import ContigError
from contig.model import ContIG
from contig.pretrain import person_splits
from genetics.atomic import atomic_path


def per_person_loss(
    model: ContIG,
    modality: str,
    x: torch.Tensor,
    own: torch.Tensor,
    reference: torch.Tensor,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_p for rows of ``x`` (P, F) with own image embeddings (P, D) and reference ones (K, D) → (P,);
    ``exclude`` (P, K) bool drops reference k from row p's negatives (p's own image among them)."""
    g = F.normalize(model.genetic_heads[modality](model.genetic_towers[modality].forward_features(x)), dim=-1)
    candidates = torch.cat([own[:, None, :], reference[None].expand(len(own), -1, -1)], dim=1)
    logits = model.logit_scale * torch.einsum("pd,pkd->pk", g, F.normalize(candidates, dim=-1))
    if exclude is not None:
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(exclude, float("-inf"))], dim=1)
    return -logits.log_softmax(dim=1)[:, 0]


def integrated_gradients(
    model: ContIG,
    modality: str,
    x: torch.Tensor,
    baseline: torch.Tensor,
    own: torch.Tensor,
    reference: torch.Tensor,
    steps: int = 32,
    chunk: int = 64,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """(P, F) attributions of L_p to each input feature (see the module docstring)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps  # (S,)
    out = torch.empty_like(x)
    for start in range(0, len(x), chunk):
        xs, own_s = x[start : start + chunk], own[start : start + chunk]
        p = len(xs)
        path = baseline + alphas[:, None, None] * (xs - baseline)[None]  # (S, p, F)
        path = path.reshape(steps * p, -1).detach().requires_grad_(True)
        mask = None if exclude is None else exclude[start : start + chunk].repeat(steps, 1)
        loss = per_person_loss(model, modality, path, own_s.repeat(steps, 1), reference, mask)
        (grad,) = torch.autograd.grad(loss.sum(), path)
        out[start : start + p] = (xs - baseline) * grad.reshape(steps, p, -1).mean(dim=0)
    return out


def reference_set(
    people: np.ndarray, n_reference: int, generator: np.random.Generator
) -> tuple[np.ndarray, torch.Tensor]:
    """Reference rows (K',) drawn from ``people`` (P,) and (P, K') bool marking what each person leaves
    out, so that every person has min(n_reference, P − 1) negatives and never its own image."""
    rows = generator.choice(people, min(n_reference + 1, people.size), replace=False)  # one spare
    exclude = people[:, None] == rows[None, :]
    if rows.size > n_reference:  # a person not among the first K drops the spare instead
        exclude[:, -1] |= ~exclude.any(axis=1)
    return rows, torch.from_numpy(exclude)


def _bar_plot(table: pd.DataFrame, title: str, path: Path, top: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(head) + 1.2))
    ax.barh(head["feature"], head["mean_abs_attribution"], color="#4477aa")
    ax.set_xlabel("mean |integrated gradient| over people")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def explain_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    split: str | None = None,
    n_reference: int = 128,
    steps: int = 32,
    top: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Attribute the contrastive loss of a run's people (``split``, default its validation split) to their
    genetic inputs; writes the files of the module docstring into ``out``; returns the top tables."""
    run = load_run(run_dir)
    model, config, record = run.model.float(), run.config, run.record
    data = Path(config.data)
    manifest = read_manifest(data / "manifest.parquet")
    splits = person_splits(config)
    chosen = set(splits.loc[splits["split"] == (split or config.val_split), "IID"])
    table = manifest[manifest["IID"].isin(chosen)].reset_index(drop=True)
    if table.empty:
        raise ContigError(f"{data}: no images of split {split or config.val_split!r} to explain")
    _, per_person = embed_images(model.image_tower, table, progress=progress)
    with torch.no_grad():
        features = torch.from_numpy(per_person.filter(like="feat_").to_numpy())
        image_embedding = model.project_image(features)  # modality → (people, D)
    iids = per_person["IID"].to_numpy(str)  # one row per person, aligned with image_embedding
    train = splits.loc[splits["split"] == config.train_split, "IID"].to_numpy()
    batch, train_batch = record.batch(iids), record.batch(train)  # every modality, decoded once
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    tops = {}
    for modality in config.genetic.modalities:
        column = record.modalities.index(modality)
        present = batch["mask"][:, column].numpy()
        if present.sum() < 2:
            continue
        train_present = train_batch["mask"][:, column]
        baseline = train_batch[modality][train_present].mean(dim=0)
        reference_rows, exclude = reference_set(np.flatnonzero(present), n_reference, generator)
        x = batch[modality][present]
        images = image_embedding[modality]
        own = images[present]
        attributions = (
            integrated_gradients(
                model, modality, x, baseline, own, images[reference_rows], steps=steps, exclude=exclude
            )
            .detach()
            .numpy()
        )
        names = record.feature_names(modality)
        people = iids[present]
        wide = pd.DataFrame(attributions, columns=names)
        wide.insert(0, "IID", people)
        ranking = pd.DataFrame(
            {
                "feature": names,
                "mean_abs_attribution": np.abs(attributions).mean(axis=0),
                "mean_attribution": attributions.mean(axis=0),
            }
        ).sort_values("mean_abs_attribution", ascending=False, kind="stable")
        ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
        order = np.argsort(-np.abs(attributions), axis=1, kind="stable")[:, :top]
        long = pd.DataFrame(
            {
                "IID": np.repeat(people, order.shape[1]),
                "rank": np.tile(np.arange(1, order.shape[1] + 1), len(people)),
                "feature": np.asarray(names)[order].ravel(),
                "attribution": np.take_along_axis(attributions, order, axis=1).ravel(),
            }
        )
        for frame, name in ((ranking, f"top_{modality}.tsv"), (long, f"people_{modality}.tsv")):
            with atomic_path(out / name) as tmp:
                frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        with atomic_path(out / f"attributions_{modality}.parquet") as tmp:
            wide.to_parquet(tmp, index=False)
        _bar_plot(ranking, f"{modality}: top features", out / f"top_{modality}.png")
        tops[modality] = ranking
    return tops
