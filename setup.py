"""Build hooks: the wheel and the sdist carry the pipeline template `retraind init` writes.

The files are listed once, in daemon/commands/pipeline_template.py (loaded here by its path: the
build needs none of retraind's dependencies). A wheel gets a copy under daemon/templates/pipeline/;
an editable install does not (init reads the checkout); the sdist gets the files at their own
paths, so a wheel built from it copies the same ones. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def _template() -> ModuleType:
    path = ROOT / "daemon" / "commands" / "pipeline_template.py"
    spec = importlib.util.spec_from_file_location("retraind_pipeline_template", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        template = _template()
        target = Path(self.build_lib) / "daemon" / template.PACKAGED
        shutil.rmtree(target, ignore_errors=True)  # a stale copy from an earlier build
        for rel in template.pipeline_files(ROOT):  # FileNotFoundError: an incomplete source tree
            self.mkpath(str((target / rel).parent))
            self.copy_file(str(ROOT / rel), str(target / rel), preserve_times=False)
            (target / rel).chmod(template.git_mode(ROOT / rel))  # pip keeps an x bit of any kind
        # and the daemon's systemd user unit, for `retraind install-service` (daemon/commands/install.py)
        self.copy_file(str(ROOT / "systemd" / "retraind.service"), str(target.parent / "retraind.service"))


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        for rel in [*_template().pipeline_files(ROOT), "systemd/retraind.service"]:
            self.mkpath(str((Path(base_dir) / rel).parent))
            self.copy_file(str(ROOT / rel), str(Path(base_dir) / rel))


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
