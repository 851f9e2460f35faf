"""train.py's model identity: a canonical pickle without the vectorizer's memory address."""

from __future__ import annotations

from types import ModuleType

import pandas as pd

from tests.conftest import train_module


def fitted(train: ModuleType, c: float = 1.0):  # type: ignore[no-untyped-def]
    frame = pd.DataFrame({"tokens": ["good fun", "bad sad", "meh ok", "good good", "sad bad", "ok meh"]})
    labels = ["positive", "negative", "neutral", "positive", "negative", "neutral"]
    return train.build_classifier(c, 42).fit(frame, labels)


def test_the_memory_address_attribute_is_left_out_and_nothing_else() -> None:
    train = train_module()
    model = fitted(train)
    tfidf = model.named_steps["features"].named_transformers_["tfidf"]
    before = train.canonical_model_sha256(model)
    tfidf._stop_words_id = 12345  # what another process would hold
    assert train.canonical_model_sha256(model) == before
    assert hasattr(tfidf, "_stop_words_id")  # hashing does not change the model
    assert train.canonical_model_sha256(fitted(train, c=0.5)) != before


def test_prediction_hash_covers_rows_and_labels_in_order() -> None:
    train = train_module()
    rows = pd.DataFrame({"file": ["a.csv", "a.csv"], "line": [2, 3], "predicted": ["positive", "neutral"]})
    same = train.predictions_sha256(rows)
    assert same == train.predictions_sha256(rows.copy())
    assert same != train.predictions_sha256(rows.assign(predicted=["positive", "negative"]))
    assert same != train.predictions_sha256(rows.iloc[::-1])


def test_serve_checks_a_served_model_with_the_hash_train_py_records() -> None:
    """retraind serve recomputes retraind.predictions.sha256 from the served model's answers."""
    from daemon.core.scoring import predictions_sha256

    predicted = ["positive", "négatif", "neutral"]
    rows = pd.DataFrame({"file": ["a.csv", "a.csv", "b.csv"], "line": [2, 7, 3], "predicted": predicted})
    listed = [(str(f), int(n), str(p)) for f, n, p in rows[["file", "line", "predicted"]].values.tolist()]
    assert predictions_sha256(listed) == train_module().predictions_sha256(rows)
    assert predictions_sha256(listed[::-1]) != predictions_sha256(listed)
