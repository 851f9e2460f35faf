"""In-container training entry: fit TF-IDF + one-vs-rest logistic regression on the Node tokens.

Runs sealed (no network, input read-only). Never talks to MLflow: it writes an MLflow model
directory, metrics, params, plots and the test-split predictions to the output directory, and the
host registers them. Usage: python train.py --input processed.jsonl --output OUT [--seed 42] ...
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.model_selection import train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import textclean  # noqa: E402  (shipped inside the model directory through code_paths)

# Pinned from the environment that trained the model, so serving installs the same versions.
SERVING_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "mlflow-skinny", "cloudpickle")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input", type=Path, required=True, help="processed JSON lines from preprocess.js")
    p.add_argument("--output", type=Path, required=True, help="directory to write the model into")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--C", type=float, default=1.0, dest="c")
    return p.parse_args(argv)


def load_processed(path: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    frame = pd.DataFrame.from_records(rows, columns=["file", "line", "sentiment", "text", "tokens"])
    if frame.empty:
        raise SystemExit(f"train: {path} holds no rows to train on")
    return frame


def build_classifier(c: float, seed: int) -> Pipeline:
    """TF-IDF over the whitespace-joined tokens, then one-vs-rest liblinear logistic regression."""
    tfidf = TfidfVectorizer(analyzer=str.split)
    return Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", tfidf, "tokens")])),
            ("clf", OneVsRestClassifier(LogisticRegression(solver="liblinear", C=c, random_state=seed))),
        ]
    )


def serving_pipeline(fitted: Pipeline) -> Pipeline:
    """Raw text in, label out: the Python port of cleanAndTokenize in front of the fitted model."""
    clean = FunctionTransformer(textclean.tokens_frame, validate=False)
    return Pipeline([("clean", clean), ("model", fitted)])


class _CanonicalPickler(pickle.Pickler):
    """pickle, minus the one attribute that differs between identical fits.

    CountVectorizer (so TfidfVectorizer) keeps `_stop_words_id = id(self.stop_words)`, a memory
    address. Leaving it out makes the bytes identical across processes and containers.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, CountVectorizer):
            reduced = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
            state = {k: v for k, v in reduced[2].items() if k != "_stop_words_id"}
            return (*reduced[:2], state, *reduced[3:])
        return NotImplemented


def canonical_model_sha256(model: Any) -> str:
    """The model's identity: SHA-256 of its canonical pickle (protocol 5)."""
    buffer = io.BytesIO()
    _CanonicalPickler(buffer, protocol=5).dump(model)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def predictions_sha256(rows: pd.DataFrame) -> str:
    """SHA-256 of the test split's [file, line, predicted label] rows, in split order, as JSON."""
    listing = rows[["file", "line", "predicted"]].values.tolist()
    text = json.dumps(listing, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compute_metrics(y_true: pd.Series, y_pred: Any, labels: list[str]) -> dict[str, float]:
    metrics = {
        "precision_weighted": precision_score(y_true, y_pred, average="weighted", zero_division=0),
        "recall_weighted": recall_score(y_true, y_pred, average="weighted", zero_division=0),
        "f1_score_weighted": f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "precision_macro": precision_score(y_true, y_pred, average="macro", zero_division=0),
        "recall_macro": recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_score_macro": f1_score(y_true, y_pred, average="macro", zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
    }
    per_class = f1_score(y_true, y_pred, average=None, labels=labels, zero_division=0)
    metrics.update({f"f1_{label}": score for label, score in zip(labels, per_class, strict=True)})
    return {k: float(v) for k, v in metrics.items()}


def write_plots(out: Path, y_true: pd.Series, y_pred: Any, labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", metadata={"Software": None})
    plt.close(fig)


def save_model(model: Pipeline, out: Path, example: pd.DataFrame) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    pins = [f"{name}=={metadata.version(name)}" for name in SERVING_PACKAGES]
    mlflow.sklearn.save_model(
        model,
        str(out / "model"),
        serialization_format="pickle",
        pip_requirements=pins,
        code_paths=[str(HERE / "textclean.py"), str(HERE / "charclass.json")],
        signature=infer_signature(example, model.predict(example)),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    artifacts = args.output / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    frame = load_processed(args.input)
    labels = sorted(frame["sentiment"].unique())
    train, test = train_test_split(
        frame, test_size=args.test_size, random_state=args.seed, stratify=frame["sentiment"]
    )
    classifier = build_classifier(args.c, args.seed).fit(train[["tokens"]], train["sentiment"])
    fit_s = time.monotonic() - started
    served_model = serving_pipeline(classifier)
    save_model(served_model, args.output, test[["text"]].head(5))

    # Metrics through the saved model on raw text: exactly what serving will do.
    import mlflow.pyfunc

    served = mlflow.pyfunc.load_model(str(args.output / "model"))
    predicted = list(served.predict(test[["text"]].reset_index(drop=True)))
    metrics = compute_metrics(test["sentiment"], predicted, labels)
    report = classification_report(test["sentiment"], predicted, labels=labels, digits=4)
    (artifacts / "classification_report.txt").write_text(report, encoding="utf-8")
    write_plots(artifacts, test["sentiment"], predicted, labels)
    scored = test.assign(predicted=predicted)
    scored[["file", "line", "text", "sentiment", "predicted"]].to_json(
        artifacts / "test_predictions.jsonl", orient="records", lines=True, force_ascii=False
    )
    identity = {
        "model_sha256": canonical_model_sha256(served_model),
        "predictions_sha256": predictions_sha256(scored),
    }
    (artifacts / "identity.json").write_text(json.dumps(identity, indent=2), encoding="utf-8")
    vocabulary = classifier.named_steps["features"].named_transformers_["tfidf"].vocabulary_
    params = {
        "seed": args.seed,
        "test_size": args.test_size,
        "C": args.c,
        "solver": "liblinear",
        "multiclass": "one-vs-rest",
        "vectorizer": "tfidf",
        "analyzer": "whitespace over Node cleanAndTokenize tokens",
        "labels": ",".join(labels),
        "n_rows": len(frame),
        "n_train": len(train),
        "n_test": len(test),
        "n_features": len(vocabulary),
    }
    (artifacts / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")
    (artifacts / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    summary = {
        "f1_score_weighted": metrics["f1_score_weighted"],
        "model_sha256": identity["model_sha256"],
        "fit_s": round(fit_s, 3),
        "duration_s": round(time.monotonic() - started, 3),
        "n_rows": len(frame),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
