"""Per-class scores, the confusion matrix and the most-confused pairs, from predictions.

scikit-learn computes the scores so they match what anyone reproducing the study would get; the
result is plain lists and dicts, ready for `result.json`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_summary(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                           top_pairs: int = 10) -> dict[str, Any]:
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    per_class = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
         "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    ]
    macro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                            zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "per_class": per_class,
        "macro": {"precision": float(macro[0]), "recall": float(macro[1]), "f1": float(macro[2])},
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
