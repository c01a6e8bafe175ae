"""Per-class scores, the confusion matrix and the most-confused pairs, from predictions.

The scores are scikit-learn's definitions (`precision_recall_fscore_support` with
`zero_division=0`, macro averages over every class, `confusion_matrix`), computed here from the
confusion matrix with NumPy: importing `sklearn.metrics` cost every run process about 1.8 s of
CPU before its first step. tests/test_metrics.py checks they equal scikit-learn's. The result is
plain lists and dicts, ready for `result.json`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, true class by row and predicted class by column (pairs outside the classes are
    left out, as scikit-learn's `confusion_matrix(labels=...)` does)."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    keep = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    flat = np.bincount(t[keep] * num_classes + p[keep], minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def classification_summary(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                           top_pairs: int = 10) -> dict[str, Any]:
    cm = confusion(y_true, y_pred, len(classes))
    hits, predicted, support = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2.0 * hits, support + predicted)
    per_class = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
         "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    ]
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "per_class": per_class,
        "macro": {"precision": float(np.mean(precision)), "recall": float(np.mean(recall)),
                  "f1": float(np.mean(f1))},
        "confusion": cm.tolist(),
        "most_confused": most_confused(cm, classes, top_pairs),
    }


def most_confused(cm: np.ndarray, classes: list[str], top: int = 10) -> list[dict[str, Any]]:
    """Off-diagonal cells, largest first: which true class is taken for which."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), cm.shape[1])
        if off[i, j] <= 0:
            break
        row = cm[i].sum()
        pairs.append({"true": classes[i], "predicted": classes[j], "count": int(off[i, j]),
                      "share": float(off[i, j] / row) if row else 0.0})
    return pairs
