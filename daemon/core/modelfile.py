"""A saved model read back: the pickle in an MLflow model directory, with the code it ships."""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import IO, Any

# What unpickling a model that is missing, truncated or from other library versions raises.
UNREADABLE = (OSError, EOFError, pickle.UnpicklingError, ImportError, AttributeError, TypeError, ValueError)


def load_model(model_dir: Path) -> Any:
    """Unpickle an MLflow model directory's model.pkl with the venv's pinned scikit-learn.

    The pickle names the cleaning code shipped in the directory (`code/textclean.py`): modules
    there are loaded from that directory, not from whatever is on sys.path.
    """
    code = {p.stem: _module_at(p) for p in sorted((model_dir / "code").glob("*.py"))}
    with (model_dir / "model.pkl").open("rb") as f:
        return _ShippedCodeUnpickler(f, code).load()


def _module_at(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"retraind_model_code.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ShippedCodeUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], code: Mapping[str, ModuleType]) -> None:
        super().__init__(file)
        self.code = code

    def find_class(self, module: str, name: str) -> Any:
        if module in self.code:
            return getattr(self.code[module], name)
        return super().find_class(module, name)
