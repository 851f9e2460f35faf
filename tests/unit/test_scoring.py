"""Scoring requests checked (daemon/core/scoring.py): MLflow's three input shapes, /predict, and each
bad input a clear 4xx, never an exception of another kind."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from daemon.core.scoring import BadRequest, Limits, invocation_texts, predict_texts, predictions
from daemon.core.serving import FollowPolicy, Served

TEXTS = ["I love it", "this is awful"]


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "doc",
    [
        {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
        {
            "dataframe_split": {
                "columns": ["id", "text"],
                "data": [[1, TEXTS[0]], [2, TEXTS[1]]],
                "index": [0, 1],
            }
        },
        {"dataframe_records": [{"text": t} for t in TEXTS]},
        {"inputs": TEXTS},
        {"inputs": {"text": TEXTS}},
        {"inputs": [{"text": t} for t in TEXTS]},
    ],
)
def test_every_mlflow_input_shape_gives_the_texts_in_order(doc: object) -> None:
    assert invocation_texts(body(doc)) == TEXTS


def test_predict_takes_a_list_of_texts() -> None:
    assert predict_texts(body({"texts": TEXTS})) == TEXTS


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (b'{"texts": ["a"', 400, "malformed JSON at line 1"),
        (b"", 400, "empty body"),
        (b'{"texts": []}', 400, "the list is empty"),
        (b'{"texts": ["a", 3]}', 400, "item 1 is int, not a string"),
        (b'{"texts": [null]}', 400, "item 0 is NoneType"),
        (b'{"texts": "just one"}', 400, "expected a list of strings"),
        (b'["a"]', 400, '{"texts"'),
        (b'{"texts": ["caf\xe9"]}', 400, "not UTF-8"),
        (b'{"texts": ["' + b"x" * 2000 + b'"]}', 413, "over the 1000-byte limit"),
        (body({"texts": ["a"] * 11}), 413, "11 texts is over the limit of 10"),
    ],
)
def test_bad_predict_bodies_are_client_errors_that_say_what_is_wrong(
    raw: bytes, status: int, says: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        predict_texts(raw, Limits(max_body_bytes=1000, max_texts=10))
    assert caught.value.status == status and says in str(caught.value)


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"dataframe_split": {"columns": ["body"], "data": [["a"]]}}, "missing column 'text'"),
        ({"dataframe_split": {"columns": ["text"], "data": [["a", "b"]]}}, "row 0 is not a list of 1 values"),
        ({"dataframe_records": [{"body": "a"}]}, "record 0 has no 'text' field"),
        ({"inputs": {"body": ["a"]}}, "missing column 'text'"),
        ({"inputs": [1, 2]}, "item 0 is int"),
        ({"instances": ["a"]}, "exactly one of dataframe_split, dataframe_records, inputs"),
        ({"inputs": ["a"], "dataframe_records": [{"text": "b"}]}, "exactly one of"),
    ],
)
def test_bad_invocations_name_the_column_or_the_shape(doc: object, says: str) -> None:
    with pytest.raises(BadRequest) as caught:
        invocation_texts(body(doc))
    assert caught.value.status == 400 and says in str(caught.value)


def test_predictions_pair_each_label_with_its_class_probabilities() -> None:
    answer = predictions(["b", "a"], ["a", "b"], [[0.25, 0.75], [0.9, 0.1]], "3")
    assert answer == {
        "model_version": "3",
        "predictions": [
            {"label": "b", "probabilities": {"a": 0.25, "b": 0.75}},
            {"label": "a", "probabilities": {"a": 0.9, "b": 0.1}},
        ],
    }


def test_a_version_that_failed_to_start_waits_for_the_retry_time_or_another_version() -> None:
    policy = FollowPolicy(retry_s=300)
    v2, v3 = Served("m", "2", "r2", "sha256:2"), Served("m", "3", "r3", "sha256:3")
    assert policy.should_start(v2, None, 0.0) and not policy.should_start(v2, "2", 0.0)
    assert not policy.should_start(None, "1", 0.0)
    policy.failed("2", 10.0)
    assert not policy.should_start(v2, "1", 100.0)  # not again before retry_s
    assert policy.should_start(v3, "1", 100.0)  # the champion moved on
    assert policy.should_start(v2, "1", 310.0)
    policy.started()
    assert policy.failed_version is None


def test_a_socket_under_a_deep_state_directory_gets_a_short_path_the_work_directory_links(
    tmp_path: Path,
) -> None:
    from daemon.engine.serving import SUN_PATH_MAX, socket_dir

    shallow = tmp_path / "v1"
    shallow.mkdir()
    assert socket_dir(shallow) == shallow / "socket"
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "v2"
    deep.mkdir(parents=True)
    short = socket_dir(deep)
    assert len(str(short / "backend.sock")) <= SUN_PATH_MAX and (short.stat().st_mode & 0o777) == 0o700
    assert (deep / "socket").resolve() == short.resolve()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(short / "backend.sock"))  # what the model process does, through the bind mount
    shutil.rmtree(short)
