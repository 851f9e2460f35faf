"""Two fitted serving pipelines compared by their parameters: vocabulary, IDF weights, coefficients.

Pure: it takes the two unpickled models (what scripts/train.py saves: a cleaning step in front of
TF-IDF over the tokens and one-vs-rest logistic regression) and returns a value. The vocabulary and
the classes must be equal; every float parameter is compared as numpy.isclose does,
|recorded - rebuilt| <= atol + rtol * |recorded|, and the largest differences are named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Where = Callable[[int], str]  # flat index in one parameter array -> "coef_ of class positive, feature 'good'"


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-9
    rtol: float = 1e-7

    @classmethod
    def relative(cls, rtol: float) -> Tolerance:
        """The `reproduce_tolerance` setting: rtol, and a hundredth of it for parameters near zero."""
        return cls(atol=rtol / 100, rtol=rtol)

    def __str__(self) -> str:
        return f"atol {self.atol:g}, rtol {self.rtol:g}"


@dataclass(frozen=True)
class Difference:
    """One parameter value in both models."""

    where: str
    recorded: float
    rebuilt: float

    @property
    def absolute(self) -> float:
        return abs(self.recorded - self.rebuilt)

    @property
    def relative(self) -> float:
        scale = max(abs(self.recorded), abs(self.rebuilt))
        return self.absolute / scale if scale else 0.0

    def __str__(self) -> str:
        return (
            f"{self.where}: recorded {self.recorded!r}, rebuilt {self.rebuilt!r}"
            f" (difference {self.absolute:.3g}, relative {self.relative:.3g})"
        )


@dataclass(frozen=True)
class ModelDiff:
    """The comparison: structural problems (no tolerance helps), else the largest float differences."""

    tolerance: Tolerance
    problems: tuple[str, ...] = ()  # vocabulary, classes or shapes differ, or a model could not be read
    compared: int = 0  # float parameters compared
    outside: int = 0  # ... of which outside the tolerance
    largest_absolute: Difference | None = None
    largest_relative: Difference | None = None
    worst: Difference | None = None  # furthest beyond the tolerance, when any value is outside it

    @property
    def within(self) -> bool:
        return not self.problems and self.outside == 0

    def summary(self) -> str:
        """One line: why no tolerance helps, how far outside it, or the largest difference within it."""
        if self.problems:
            return "; ".join(self.problems)
        if self.worst is not None and self.outside:
            return (
                f"{self.outside} of {self.compared} parameters outside tolerance ({self.tolerance}),"
                f" the furthest {self.worst}"
            )
        largest = self.largest_absolute
        if largest is None or largest.absolute == 0.0:
            return f"all {self.compared} parameters equal"
        within = f"all {self.compared} parameters within tolerance ({self.tolerance})"
        return f"{within}, the largest difference {largest}"

    def as_json(self) -> dict[str, Any]:
        def shown(d: Difference | None) -> dict[str, Any] | None:
            if d is None:
                return None
            return {"where": d.where, "recorded": d.recorded, "rebuilt": d.rebuilt,
                    "absolute": d.absolute, "relative": d.relative}  # fmt: skip

        return {
            "within_tolerance": self.within,
            "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
            "problems": list(self.problems),
            "compared": self.compared,
            "outside": self.outside,
            "largest_absolute": shown(self.largest_absolute),
            "largest_relative": shown(self.largest_relative),
            "worst": shown(self.worst),
        }


@dataclass(frozen=True)
class Parameters:
    """The parameters of one serving pipeline that decide its predictions."""

    vocabulary: dict[str, int]
    idf: Any  # ndarray
    classes: tuple[str, ...]
    estimators: tuple[tuple[str, Any, Any], ...]  # (class it separates, coef_, intercept_)
    terms: tuple[str, ...]  # by feature index


def fitted_parameters(serving: Any) -> Parameters:
    """Reach through the cleaning step to the TF-IDF vectorizer and the one-vs-rest classifier."""
    model = serving.named_steps.get("model", serving)
    tfidf = model.named_steps["features"].named_transformers_["tfidf"]
    clf = model.named_steps["clf"]
    classes = tuple(str(c) for c in clf.classes_)
    # One estimator per class; a binary problem has one, separating classes_[1] from classes_[0].
    labels = classes if len(clf.estimators_) == len(classes) else classes[1:]
    estimators = tuple(
        (label, getattr(e, "coef_", None), getattr(e, "intercept_", None))
        for label, e in zip(labels, clf.estimators_, strict=True)
    )
    vocabulary = {str(k): int(v) for k, v in tfidf.vocabulary_.items()}
    terms = tuple(sorted(vocabulary, key=vocabulary.__getitem__))
    return Parameters(vocabulary, tfidf.idf_, classes, estimators, terms)


def compare_models(recorded: Any, rebuilt: Any, tolerance: Tolerance | None = None) -> ModelDiff:
    """Compare two fitted serving pipelines; equal structure first, then every float within tolerance."""
    tolerance = tolerance or Tolerance()
    try:
        then, now = fitted_parameters(recorded), fitted_parameters(rebuilt)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        return ModelDiff(tolerance, (f"cannot read the model's parameters ({type(e).__name__}: {e})",))
    problems = _structure(then, now)
    if problems:
        return ModelDiff(tolerance, tuple(problems))
    return _numeric(list(_arrays(then, now)), tolerance)


def _structure(then: Parameters, now: Parameters) -> list[str]:
    problems = []
    if then.classes != now.classes:
        problems.append(f"classes differ: recorded {list(then.classes)}, rebuilt {list(now.classes)}")
    if then.vocabulary != now.vocabulary:
        only_then = sorted(set(then.vocabulary) - set(now.vocabulary))
        only_now = sorted(set(now.vocabulary) - set(then.vocabulary))
        if only_then or only_now:
            problems.append(
                f"vocabulary differs: {len(only_then)} terms only recorded {only_then[:3]},"
                f" {len(only_now)} only rebuilt {only_now[:3]}"
            )
        else:
            problems.append("vocabulary differs: the same terms at other feature indices")
    if problems:
        return problems
    pairs = [("idf_", then.idf, now.idf)]
    for (label, coef_then, b_then), (_, coef_now, b_now) in zip(then.estimators, now.estimators, strict=True):
        pairs += [
            (f"coef_ of class {label}", coef_then, coef_now),
            (f"intercept_ of class {label}", b_then, b_now),
        ]
    for name, a, b in pairs:
        if (a is None) != (b is None) or (a is not None and np.shape(a) != np.shape(b)):
            problems.append(f"{name} differs in shape: recorded {np.shape(a)}, rebuilt {np.shape(b)}")
    return problems


def _arrays(then: Parameters, now: Parameters) -> Iterator[tuple[Where, Any, Any]]:
    """Each float parameter array in both models, with how to name one of its values."""
    yield _feature_of("idf_ of", then.terms), then.idf, now.idf
    for (label, coef_then, b_then), (_, coef_now, b_now) in zip(then.estimators, now.estimators, strict=True):
        if coef_then is None:  # a class constant in the training split: no fitted parameters
            continue
        yield _feature_of(f"coef_ of class {label},", then.terms), coef_then, coef_now
        yield _feature_of(f"intercept_ of class {label}", ()), b_then, b_now


def _feature_of(name: str, terms: Sequence[str]) -> Where:
    """Name a flat index: the feature of a (1, n_features) row, or just the array without features."""

    def where(i: int) -> str:
        return f"{name} feature {terms[i % len(terms)]!r}" if terms else name

    return where


def _numeric(arrays: Sequence[tuple[Where, Any, Any]], tolerance: Tolerance) -> ModelDiff:
    compared = outside = 0
    largest_abs: tuple[float, Difference] | None = None
    largest_rel: tuple[float, Difference] | None = None
    worst: tuple[float, Difference] | None = None
    for where, then_values, now_values in arrays:
        a = np.asarray(then_values, dtype=np.float64).ravel()
        b = np.asarray(now_values, dtype=np.float64).ravel()
        if a.size == 0:
            continue
        both_nan = np.isnan(a) & np.isnan(b)
        delta = np.where(both_nan, 0.0, np.nan_to_num(np.abs(a - b), nan=np.inf))
        scale = np.maximum(np.abs(a), np.abs(b))
        rel = np.divide(delta, scale, out=np.zeros_like(delta), where=scale > 0)
        excess = delta - (tolerance.atol + tolerance.rtol * np.abs(a))
        compared += a.size
        outside += int(np.count_nonzero(excess > 0))
        for best, values in ((0, delta), (1, rel), (2, excess)):
            i = int(np.argmax(values))
            found = (float(values[i]), Difference(where(i), float(a[i]), float(b[i])))
            if best == 0 and (largest_abs is None or found[0] > largest_abs[0]):
                largest_abs = found
            elif best == 1 and (largest_rel is None or found[0] > largest_rel[0]):
                largest_rel = found
            elif best == 2 and found[0] > 0 and (worst is None or found[0] > worst[0]):
                worst = found
    return ModelDiff(
        tolerance,
        (),
        compared,
        outside,
        largest_abs[1] if largest_abs else None,
        largest_rel[1] if largest_rel else None,
        worst[1] if worst else None,
    )
