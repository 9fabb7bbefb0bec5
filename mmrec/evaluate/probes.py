"""Linear probes: how much of a known truth a tower's vectors hold.

When a model falls short of a reference that knows the truth (the shop's
"true attributes" scorer), the probes say which tower is short: a linear map
fitted on part of the items (or users) and scored on the rest tells whether
the item vectors still carry each true attribute group (category, fit,
brand, material, shade, pattern) and whether the user vectors carry the
user's true tastes. A group the item vectors cannot predict is a group the
model cannot rank by, whatever the user tower does.

Both probes are ridge regressions on standardised vectors, in closed form,
plain NumPy: a one-hot least-squares classifier for attributes (accuracy on
the held-out part, beside the majority class's), a multi-output regression
for tastes (R² on the held-out part, averaged over the taste values).

Example:

    attribute_probe(item_table, truth.item_attributes["shade"])
    # {"accuracy": 0.93, "majority": 0.34, "classes": 3, "held_out": 300}
    taste_probe(user_vectors, tastes)["r2"]
"""

from __future__ import annotations

import numpy as np

PROBE_L2 = 1.0
"""Ridge penalty on standardised inputs; small beside hundreds of rows."""


def _held_out_split(rows: int, held_out_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if rows < 4:
        raise ValueError(f"a probe needs at least 4 rows to fit and score; got {rows}")
    if not 0.0 < held_out_share < 1.0:
        raise ValueError(f"held_out_share must be in (0, 1); got {held_out_share}")
    order = np.random.default_rng(seed).permutation(rows)
    cut = min(rows - 1, max(1, round(rows * (1.0 - held_out_share))))
    return order[:cut], order[cut:]


def _ridge(inputs: np.ndarray, targets: np.ndarray, fit: np.ndarray,
           l2: float) -> np.ndarray:
    """Predictions for every row of a ridge fit (with intercept) on the ``fit`` rows."""
    inputs = np.asarray(inputs, dtype=np.float64)
    mean, scale = inputs[fit].mean(0), inputs[fit].std(0)
    scale[scale == 0] = 1.0
    design = np.c_[(inputs - mean) / scale, np.ones(len(inputs))]
    penalty = l2 * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(design[fit].T @ design[fit] + penalty, design[fit].T @ targets[fit])
    return design @ weights


def attribute_probe(vectors: np.ndarray, codes: np.ndarray, *, held_out_share: float = 0.3,
                    seed: int = 0, l2: float = PROBE_L2) -> dict:
    """Held-out accuracy of a linear classifier from ``vectors`` [N, D] to the
    integer ``codes`` [N] of one attribute group, beside the majority class's."""
    codes = np.asarray(codes)
    if len(codes) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(codes)} codes")
    classes, index = np.unique(codes, return_inverse=True)
    fit, held_out = _held_out_split(len(codes), held_out_share, seed)
    predicted = _ridge(vectors, np.eye(len(classes))[index], fit, l2).argmax(1)
    majority = np.bincount(index[fit], minlength=len(classes)).argmax()
    return {"accuracy": float((predicted[held_out] == index[held_out]).mean()),
            "majority": float((index[held_out] == majority).mean()),
            "classes": int(len(classes)), "held_out": int(len(held_out))}


def taste_probe(vectors: np.ndarray, tastes: np.ndarray, *, held_out_share: float = 0.3,
                seed: int = 0, l2: float = PROBE_L2) -> dict:
    """Held-out R² of a linear regression from ``vectors`` [U, D] to true tastes
    [U, T], averaged over the T taste values (1 is perfect, 0 is the mean)."""
    tastes = np.asarray(tastes, dtype=np.float64)
    if len(tastes) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(tastes)} taste rows")
    fit, held_out = _held_out_split(len(tastes), held_out_share, seed)
    predicted = _ridge(vectors, tastes, fit, l2)[held_out]
    truth = tastes[held_out]
    residual = ((truth - predicted) ** 2).sum(0)
    total = ((truth - tastes[fit].mean(0)) ** 2).sum(0)
    return {"r2": float(np.mean(1.0 - residual / np.where(total > 0, total, 1.0))),
            "held_out": int(len(held_out))}
