from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemon.core.baseimage import (
    archive_sha256,
    check_pin,
    export_base,
    import_base,
    pin_matches,
    verify_base,
)
from daemon.core.config import Settings, load_settings
from daemon.core.errors import ConfigError

BASE = "localhost/retraind-base:bookworm"
ID = "sha256:" + "ab12" * 16


@dataclass
class FakeImages:
    """An image store: names to IDs; save writes the ID into the archive, load reads it back."""

    names: dict[str, str] = field(default_factory=dict)
    tagged: list[tuple[str, str]] = field(default_factory=list)
    said: str = ""

    def image_id(self, ref: str) -> str | None:
        return self.names.get(ref) or (ref if ref in self.names.values() else None)

    def save(self, ref: str, archive: Path) -> None:
        archive.write_text(f"{ref}={self.names[ref]}")

    def load(self, archive: Path) -> str:
        ref, image_id = archive.read_text().split("=")
        self.names[ref] = image_id
        return self.said or f"Loaded image: {ref}"

    def tag(self, image: str, ref: str) -> None:
        self.tagged.append((image, ref))
        self.names[ref] = image


def settings(tmp: Path, **values: str) -> Settings:
    return load_settings(
        {"repo": tmp, "data_dir": tmp, "state_dir": tmp / "s", **values}, environ={"HOME": str(tmp)}
    )


def test_a_pin_may_be_abbreviated_but_not_below_twelve_digits(tmp_path: Path) -> None:
    assert (
        pin_matches(ID, ID)
        and pin_matches(ID, ID[7:19])
        and pin_matches(ID, ID.upper().removeprefix("SHA256:"))
    )
    assert not pin_matches(ID, "ab12ab12") and not pin_matches(ID, "cd" * 32)
    with pytest.raises(ConfigError, match="at least 12"):
        check_pin(settings(tmp_path, base_image_id="ab12"), ID)


def test_a_pinned_runner_refuses_another_or_a_missing_base_saying_how_to_import_it(tmp_path: Path) -> None:
    check_pin(settings(tmp_path), "sha256:" + "ff" * 32)  # no pin, no check
    pinned = settings(tmp_path, base_image_id=ID)
    check_pin(pinned, ID)
    with pytest.raises(
        ConfigError, match=r"is ffffffffffff, but base_image_id pins ab12ab12ab12.*base import"
    ) as e:
        check_pin(pinned, "sha256:" + "ff" * 32)
    assert e.value.exit_code == 78
    with pytest.raises(ConfigError, match="is missing but base_image_id pins"):
        check_pin(pinned, None)


def test_export_then_import_in_another_store_keeps_the_image_id(tmp_path: Path) -> None:
    here, there = FakeImages({BASE: ID}), FakeImages()
    archive = tmp_path / "base.tar"
    sent = export_base(here, BASE, archive)
    assert (sent.image_id, sent.sha256, sent.size) == (ID, archive_sha256(archive), archive.stat().st_size)
    with pytest.raises(ConfigError, match="already exists"):
        export_base(here, BASE, archive)
    got = import_base(there, BASE, archive, expect_sha256=sent.sha256)
    assert got.image_id == ID and there.image_id(BASE) == ID and there.tagged == []
    with pytest.raises(ConfigError, match="not the expected"):
        import_base(FakeImages(), BASE, archive, expect_sha256="00" * 32)


def test_an_archive_of_another_name_is_tagged_as_the_base(tmp_path: Path) -> None:
    archive = tmp_path / "base.tar"
    export_base(FakeImages({"localhost/team-base:2026-11": ID}), "localhost/team-base:2026-11", archive)
    there = FakeImages()
    assert import_base(there, BASE, archive).image_id == ID
    assert there.tagged == [(ID, BASE)]


def test_verify_names_each_problem(tmp_path: Path) -> None:
    assert verify_base(FakeImages({BASE: ID}), settings(tmp_path, base_image_id=ID[7:21])) == []
    (missing,) = verify_base(FakeImages(), settings(tmp_path))
    assert "is missing" in missing and "base import" in missing
    (other,) = verify_base(FakeImages({BASE: "sha256:" + "ee" * 32}), settings(tmp_path, base_image_id=ID))
    assert "eeeeeeeeeeee" in other and "ab12ab12ab12" in other
