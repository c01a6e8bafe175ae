"""The scores in `result.json` are scikit-learn's: lab computes them with NumPy (importing
`sklearn.metrics` cost each run process ~1.8 s of CPU) and must give the same numbers for any
labels and predictions, classes never seen or never predicted included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from lab.core.metrics import classification_summary


@st.composite
def predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    n = draw(st.integers(1, 6))
    size = draw(st.integers(1, 40))
    labels = st.lists(st.integers(0, n - 1), min_size=size, max_size=size)
    return np.array(draw(labels)), np.array(draw(labels)), n


@settings(max_examples=30, deadline=None, derandomize=True)
@pytest.mark.filterwarnings("ignore:A single label was found")
@given(predictions())
def test_scores_equal_scikit_learns(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    y_true, y_pred, n = case
    labels = list(range(n))
    summary = classification_summary(y_true, y_pred, [f"c{i}" for i in labels])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    rows = summary["per_class"]
    assert [row["precision"] for row in rows] == pytest.approx(p.tolist(), abs=1e-12)
    assert [row["recall"] for row in rows] == pytest.approx(r.tolist(), abs=1e-12)
    assert [row["f1"] for row in rows] == pytest.approx(f.tolist(), abs=1e-12)
    assert [row["support"] for row in rows] == s.tolist()
    macro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                            zero_division=0)
    assert [summary["macro"][k] for k in ("precision", "recall", "f1")] == pytest.approx(
        list(macro[:3]), abs=1e-12)
    assert summary["confusion"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert summary["accuracy"] == pytest.approx(float(np.mean(y_true == y_pred)))


def test_a_class_never_predicted_scores_zero_not_nan() -> None:
    summary = classification_summary(np.array([0, 1, 2]), np.array([0, 0, 0]), ["a", "b", "c"])
    assert [row["precision"] for row in summary["per_class"]] == [pytest.approx(1 / 3), 0, 0]
    assert summary["confusion"] == [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
    assert summary["most_confused"][0]["true"] == "b"
