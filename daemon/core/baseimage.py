"""The pinned base image: one archive a team shares (`podman save`/`load` keep the image ID), and the
check that a machine builds on the base it was pinned to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from daemon.core.config import Settings
from daemon.core.errors import ConfigError

MIN_ID_CHARS = 12  # a pinned ID may be abbreviated, as podman shows it, but not below this


class BaseImages(Protocol):
    def image_id(self, ref: str) -> str | None: ...
    def save(self, ref: str, archive: Path) -> None: ...
    def load(self, archive: Path) -> str: ...
    def tag(self, image: str, ref: str) -> None: ...


@dataclass(frozen=True)
class BaseArchive:
    ref: str
    image_id: str
    archive: Path
    sha256: str  # of the archive file: what a team checks after copying it
    size: int


def archive_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _bare(image_id: str) -> str:
    return image_id.removeprefix("sha256:").lower()


def pin_matches(image_id: str, pinned: str) -> bool:
    """Whether an image ID is the pinned one (the pin may be abbreviated to MIN_ID_CHARS or more)."""
    want = _bare(pinned)
    return len(want) >= MIN_ID_CHARS and _bare(image_id).startswith(want)


def check_pin(settings: Settings, image_id: str | None) -> None:
    """Refuse (exit 78) to build on a base other than base_image_id; no pin, no check."""
    if not settings.base_image_id:
        return
    if len(_bare(settings.base_image_id)) < MIN_ID_CHARS:
        raise ConfigError(
            f"base_image_id {settings.base_image_id!r}: give at least {MIN_ID_CHARS} hex digits"
        )
    if image_id is None:
        raise ConfigError(
            f"base image {settings.base_image} is missing but base_image_id pins "
            f"{_bare(settings.base_image_id)[:12]}: import the team's base with retraind base import FILE"
        )
    if not pin_matches(image_id, settings.base_image_id):
        raise ConfigError(
            f"base image {settings.base_image} is {_bare(image_id)[:12]}, but base_image_id pins "
            f"{_bare(settings.base_image_id)[:12]}: import the pinned base with retraind base import FILE "
            "(or change base_image_id if the team moved on)"
        )


def export_base(images: BaseImages, ref: str, archive: Path) -> BaseArchive:
    image_id = images.image_id(ref)
    if image_id is None:
        raise ConfigError(f"base image {ref} is missing; build it with: bash tools/base-image.sh")
    if archive.exists():
        raise ConfigError(f"{archive} already exists; remove it or name another file")
    images.save(ref, archive)
    return BaseArchive(ref, image_id, archive, archive_sha256(archive), archive.stat().st_size)


def import_base(images: BaseImages, ref: str, archive: Path, expect_sha256: str = "") -> BaseArchive:
    """Load the archive (its digest checked first when one is given) and name its image ref."""
    if not archive.is_file():
        raise ConfigError(f"{archive} is not a file; copy the team's base archive here first")
    digest = archive_sha256(archive)
    if expect_sha256 and digest != expect_sha256.lower():
        raise ConfigError(f"{archive} has sha256 {digest}, not the expected {expect_sha256}: copy it again")
    said = images.load(archive)  # "Loaded image: NAME" or "Loaded image(s): NAME,NAME"
    loaded = [
        n.strip() for line in said.splitlines() if ":" in line for n in line.split(":", 1)[1].split(",")
    ]
    image_id = next((i for n in loaded if (i := images.image_id(n)) is not None), None)
    if image_id is None:
        raise ConfigError(f"{archive} holds no image podman could load (it said {said!r})")
    if images.image_id(ref) != image_id:
        images.tag(image_id, ref)
    return BaseArchive(ref, image_id, archive, digest, archive.stat().st_size)


def verify_base(images: BaseImages, settings: Settings) -> list[str]:
    """Problems with the local base (missing, or not the pinned one); [] when it is right."""
    image_id = images.image_id(settings.base_image)
    if image_id is None and not settings.base_image_id:
        how = "bash tools/base-image.sh, or retraind base import FILE"
        return [f"base image {settings.base_image} is missing: {how}"]
    try:
        check_pin(settings, image_id)
    except ConfigError as e:
        return [str(e)]
    return []
