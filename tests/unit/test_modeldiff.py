"""Model comparison by parameters: real tiny pipelines built as scripts/train.py builds them."""

from __future__ import annotations

import copy
import pickle
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from daemon.core.modeldiff import Tolerance, compare_models
from daemon.core.modelfile import load_model
from tests.conftest import ROOT, train_module

POSITIVE = ["good", "great", "love", "happy", "fun", "nice"]
NEGATIVE = ["bad", "awful", "hate", "sad", "boring", "ugly"]
NEUTRAL = ["today", "train", "table", "monday", "paper", "window"]


CLASSES = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}


def corpus(classes: tuple[str, ...] = tuple(CLASSES)) -> tuple[pd.DataFrame, list[str]]:
    """12 texts a class: each text two words of its class and one neutral word."""
    texts, labels = [], []
    for label, words in ((c, CLASSES[c]) for c in classes):
        for i in range(12):
            texts.append(f"{words[i % 6]} {words[(i + 1) % 6]} the {NEUTRAL[(i * 5) % 6]}!")
            labels.append(label)
    return pd.DataFrame({"text": texts}), labels


def serving_model(classes: tuple[str, ...] = tuple(CLASSES)) -> Any:
    """Fitted the way train.py fits: build_classifier on the tokens, served behind the cleaning step."""
    train = train_module()
    frame, labels = corpus(classes)
    tokens = frame.assign(tokens=[" ".join(train.textclean.clean_and_tokenize(t)) for t in frame["text"]])
    fitted = train.build_classifier(1.0, 42).fit(tokens[["tokens"]], labels)
    return train.serving_pipeline(fitted)


def estimator(model: Any, label: str) -> Any:
    clf = model.named_steps["model"].named_steps["clf"]
    return clf.estimators_[list(clf.classes_).index(label)]


def feature(model: Any, term: str) -> int:
    tfidf = model.named_steps["model"].named_steps["features"].named_transformers_["tfidf"]
    return int(tfidf.vocabulary_[term])


def nudged(model: Any, label: str, term: str, by: float) -> Any:
    other = copy.deepcopy(model)
    estimator(other, label).coef_[0, feature(other, term)] += by
    return other


def save_model_dir(model: Any, target: Path) -> Path:
    """An MLflow model directory as train.py leaves it: model.pkl and the cleaning code in code/."""
    (target / "code").mkdir(parents=True)
    with (target / "model.pkl").open("wb") as f:
        pickle.dump(model, f, protocol=5)
    for name in ("textclean.py", "charclass.json"):
        shutil.copy(ROOT / "scripts" / name, target / "code" / name)
    return target


def test_two_fits_of_the_same_data_have_the_same_bytes_and_equal_parameters(tmp_path: Path) -> None:
    train = train_module()
    recorded, rebuilt = serving_model(), serving_model()
    assert train.canonical_model_sha256(recorded) == train.canonical_model_sha256(rebuilt)
    loaded = load_model(save_model_dir(rebuilt, tmp_path / "model"))  # the pickle, read back
    diff = compare_models(recorded, loaded)
    n_features = len(recorded.named_steps["model"].named_steps["features"].named_transformers_["tfidf"].idf_)
    assert diff.within and diff.problems == () and diff.outside == 0
    assert diff.compared == n_features + 3 * (n_features + 1)  # idf_, then coef_ and intercept_ per class
    assert diff.largest_absolute is not None and diff.largest_absolute.absolute == 0.0
    assert diff.summary() == f"all {diff.compared} parameters equal"
    frame, _ = corpus()
    assert list(loaded.predict(frame)) == list(recorded.predict(frame))  # the shipped cleaning code ran


def test_a_difference_of_1e_12_is_within_tolerance_and_named() -> None:
    recorded = serving_model()
    diff = compare_models(recorded, nudged(recorded, "positive", "good", 1e-12))
    assert diff.within and diff.outside == 0
    largest = diff.largest_absolute
    assert largest is not None and largest.where == "coef_ of class positive, feature 'good'"
    assert largest.absolute == pytest.approx(1e-12, rel=1e-3)
    assert diff.largest_relative is not None and diff.largest_relative.where == largest.where
    assert (
        "coef_ of class positive, feature 'good'" in diff.summary() and "within tolerance" in diff.summary()
    )
    assert diff.as_json()["largest_absolute"]["where"] == largest.where


def test_a_difference_of_1e_3_is_outside_tolerance_and_named_with_its_size() -> None:
    recorded = serving_model()
    diff = compare_models(recorded, nudged(recorded, "negative", "sad", 1e-3))
    assert not diff.within and diff.outside == 1
    assert diff.worst is not None and diff.worst.where == "coef_ of class negative, feature 'sad'"
    assert diff.worst.absolute == pytest.approx(1e-3, rel=1e-6)
    assert diff.summary().startswith(
        f"1 of {diff.compared} parameters outside tolerance (atol 1e-09, rtol 1e-07)"
    )
    assert compare_models(recorded, nudged(recorded, "negative", "sad", 1e-3), Tolerance.relative(0.1)).within


def test_an_intercept_that_flips_a_prediction_is_outside_tolerance() -> None:
    recorded = serving_model()
    frame, _ = corpus()
    flipped = copy.deepcopy(recorded)
    estimator(flipped, "neutral").intercept_[0] += 50.0  # every text now scores highest as neutral
    before, after = list(recorded.predict(frame)), list(flipped.predict(frame))
    assert before != after
    diff = compare_models(recorded, flipped)
    assert not diff.within and diff.worst is not None and diff.worst.where == "intercept_ of class neutral"


def test_a_binary_model_names_the_class_its_one_estimator_separates() -> None:
    recorded = serving_model(("positive", "negative"))  # one estimator: classes_[1] against classes_[0]
    assert len(recorded.named_steps["model"].named_steps["clf"].estimators_) == 1
    other = copy.deepcopy(recorded)
    other.named_steps["model"].named_steps["clf"].estimators_[0].coef_[0, feature(other, "love")] += 1e-3
    diff = compare_models(recorded, other)
    assert diff.worst is not None and diff.worst.where == "coef_ of class positive, feature 'love'"


def test_idf_weights_are_compared_by_feature() -> None:
    recorded = serving_model()
    other = copy.deepcopy(recorded)
    tfidf = other.named_steps["model"].named_steps["features"].named_transformers_["tfidf"]
    tfidf.idf_ = tfidf.idf_.copy()
    tfidf.idf_[tfidf.vocabulary_["monday"]] += 1e-4
    diff = compare_models(recorded, other)
    assert not diff.within and diff.worst is not None and diff.worst.where == "idf_ of feature 'monday'"


def test_another_vocabulary_or_other_classes_differ_whatever_the_tolerance() -> None:
    recorded, loose = serving_model(), Tolerance(atol=1e6, rtol=1e6)
    other = copy.deepcopy(recorded)
    tfidf = other.named_steps["model"].named_steps["features"].named_transformers_["tfidf"]
    tfidf.vocabulary_ = {("goood" if k == "good" else k): v for k, v in tfidf.vocabulary_.items()}
    diff = compare_models(recorded, other, loose)
    assert not diff.within and diff.compared == 0
    assert diff.problems == ("vocabulary differs: 1 terms only recorded ['good'], 1 only rebuilt ['goood']",)
    relabelled = copy.deepcopy(recorded)
    relabelled.named_steps["model"].named_steps["clf"].classes_[0] = "angry"
    assert compare_models(recorded, relabelled, loose).problems[0].startswith("classes differ")


def test_something_that_is_not_the_pipeline_is_a_problem_not_a_crash() -> None:
    diff = compare_models(serving_model(), object())
    assert not diff.within and diff.problems[0].startswith("cannot read the model's parameters")
