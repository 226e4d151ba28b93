#!/usr/bin/env python3
"""Rename photos to the date and time they were taken, read from EXIF.

Dry run by default; pass --apply to rename. Every real run writes a CSV log
(old name, new name) that --undo can replay backwards. See README.md.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

EXIF_IFD = 0x8769  # pointer to the Exif sub-IFD
TAG_DATETIME = 306  # DateTime (last modified, in IFD0)
TAG_DATETIME_ORIGINAL = 36867  # DateTimeOriginal (shutter time, in the Exif IFD)
TAG_MODEL = 272  # camera model
EXIF_FORMAT = "%Y:%m:%d %H:%M:%S"

DEFAULTS = {
    "pattern": "%Y-%m-%d_%H-%M-%S",
    "shift_hours": 0,
    "extensions": [".jpg", ".jpeg", ".png", ".heic", ".tif", ".tiff"],
    "fallback_to_mtime": True,
    "include_camera_model": False,
    "log": {"file": "rename-log.csv"},
}


def load_config(path: Path | None) -> dict:
    config = dict(DEFAULTS)
    if path is not None:
        with path.open("rb") as f:
            config.update(tomllib.load(f))
    return config


def taken_at(photo: Path, fallback_to_mtime: bool) -> tuple[datetime | None, str, str]:
    """Return (timestamp, source of the timestamp, camera model)."""
    try:
        with Image.open(photo) as img:
            exif = img.getexif()
    except OSError:
        exif = None
    model = ""
    if exif:
        model = str(exif.get(TAG_MODEL, "")).strip().replace(" ", "")
        original = exif.get_ifd(EXIF_IFD).get(TAG_DATETIME_ORIGINAL)
        for value, source in ((original, "DateTimeOriginal"), (exif.get(TAG_DATETIME), "DateTime")):
            if value:
                try:
                    return datetime.strptime(str(value).strip("\x00 "), EXIF_FORMAT), source, model
                except ValueError:
                    pass  # some phones write garbage like "0000:00:00 00:00:00"
    if fallback_to_mtime:
        return datetime.fromtimestamp(photo.stat().st_mtime), "file mtime", model
    return None, "none", model


def plan_renames(folder: Path, config: dict) -> list[tuple[Path, Path, str]]:
    extensions = {e.lower() for e in config["extensions"]}
    shift = timedelta(hours=config["shift_hours"])
    taken_names: set[str] = set()
    plan = []
    for photo in sorted(p for p in folder.iterdir() if p.suffix.lower() in extensions):
        when, source, model = taken_at(photo, config["fallback_to_mtime"])
        if when is None:
            print(f"skip  {photo.name}: no date found", file=sys.stderr)
            continue
        if source != "file mtime":
            when += shift  # the shift corrects the camera clock, not the computer's
        stem = when.strftime(config["pattern"])
        if config["include_camera_model"] and model:
            stem += f"_{model}"
        suffix = photo.suffix.lower()
        name, n = stem + suffix, 0
        while name in taken_names or ((folder / name).exists() and folder / name != photo):
            n += 1  # burst shots taken within the same second
            name = f"{stem}_{n}{suffix}"
        taken_names.add(name)
        if name != photo.name:
            plan.append((photo, folder / name, source))
    return plan


def apply(plan: list[tuple[Path, Path, str]], log_path: Path) -> None:
    with log_path.open("a", newline="") as f:
        writer = csv.writer(f)
        for old, new, _ in plan:
            old.rename(new)
            writer.writerow([old.name, new.name])


def undo(folder: Path, log_path: Path) -> None:
    with log_path.open(newline="") as f:
        rows = list(csv.reader(f))
    for old_name, new_name in reversed(rows):
        if (folder / new_name).exists() and not (folder / old_name).exists():
            (folder / new_name).rename(folder / old_name)
            print(f"undo  {new_name} -> {old_name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--apply", action="store_true", help="really rename (default: dry run)")
    parser.add_argument("--shift", type=float, help="hours to add to the EXIF time")
    parser.add_argument("--config", type=Path, help="TOML file with defaults")
    parser.add_argument("--undo", type=Path, metavar="LOG", help="reverse a previous run")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    if args.shift is not None:
        config["shift_hours"] = args.shift
    if args.undo:
        undo(args.folder, args.undo)
        return 0

    plan = plan_renames(args.folder, config)
    for old, new, source in plan:
        print(f"{'rename' if args.apply else 'would rename'}  {old.name} -> {new.name}  ({source})")
    if args.apply:
        apply(plan, args.folder / config["log"]["file"])
    elif plan:
        print(f"\n{len(plan)} file(s) would be renamed. Run again with --apply.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
