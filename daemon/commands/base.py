"""`retraind base export|import|verify`: the base image shared as one archive, and the pin checked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from daemon.commands.common import FORMAT, settings_flags, settings_of
from daemon.core.errors import EXIT_CONFIG, EXIT_OK

SUBCOMMANDS = (
    ("export", "podman save the base image to FILE; print its image ID and the archive's sha256"),
    ("import", "podman load FILE and name it as base_image; print its image ID"),
    ("verify", "check the local base image against base_image_id (exit 78 if it differs)"),
)


def add_parser(sub: Any) -> None:
    base = sub.add_parser(
        "base",
        help="share the base image as one archive (image IDs survive): export, import, verify",
        formatter_class=FORMAT,
    )
    base.set_defaults(main=main)
    commands = base.add_subparsers(dest="base_command", required=True)
    for name, what in SUBCOMMANDS:
        p = commands.add_parser(name, help=what)
        settings_flags(p)
        if name != "verify":
            p.add_argument("file", type=Path, help="the archive")
        if name == "import":
            p.add_argument("--sha256", default="", help="refuse the archive unless it has this digest")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.adapters.podman import PodmanCli
    from daemon.core.baseimage import export_base, import_base, verify_base

    settings = settings_of(args)
    images = PodmanCli()
    if args.base_command == "verify":
        problems = verify_base(images, settings)
        image_id = images.image_id(settings.base_image)
        verdict = {"base_image": settings.base_image, "image_id": image_id, "pinned": settings.base_image_id}
        shown = f"{settings.base_image}: {image_id or 'missing'}" + "".join(f"\n  {p}" for p in problems)
        print(json.dumps({**verdict, "ok": not problems, "problems": problems}) if json_lines else shown)
        return EXIT_OK if not problems else EXIT_CONFIG
    if args.base_command == "export":
        done = export_base(images, settings.base_image, args.file.resolve())
    else:
        done = import_base(images, settings.base_image, args.file.resolve(), args.sha256)
    fields: dict[str, Any] = {"base_image": done.ref, "image_id": done.image_id, "archive": str(done.archive)}
    fields.update(sha256=done.sha256, size=done.size)
    if json_lines:
        print(json.dumps(fields))
        return EXIT_OK
    verb = "exported to" if args.base_command == "export" else "imported from"
    print(f"{done.ref} {done.image_id[:12]} {verb} {done.archive} ({done.size / 1e6:,.0f} MB)")
    print(f"archive sha256 {done.sha256}")
    print(f'pin it on every runner: base_image_id = "{done.image_id}"')
    return EXIT_OK
