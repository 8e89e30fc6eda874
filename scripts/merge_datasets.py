"""Merge dataset folders (``onfh synth`` cohorts) into one training set, case ids prefixed.

Why: the default model is trained on one-hip and bilateral cohorts together, and on a
many-core machine each cohort part is synthesised by its own process. ``onfh train``
reads one folder, so the parts are merged here: images, labels and tissue maps are
hard-linked (copied across file systems) under ``<prefix><case id>``, and the rows of
every ``cases.csv`` are merged with the new ids. Nothing in an existing folder is
replaced.

    python scripts/merge_datasets.py OUT u0=part0 u1=part1 b0=bilateral
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

from onfh.dataset import (
    CASES_CSV,
    IMAGES_DIR,
    LABELS_DIR,
    TISSUES_DIR,
    case_paths,
    list_cases,
    tissue_map_path,
    write_dataset_json,
)
from onfh.errors import OnfhError


def _link(source: Path, target: Path) -> None:
    if target.exists():
        raise OnfhError(f"{target}: exists; not overwriting it")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def merge(output: Path, parts: list[tuple[str, Path]]) -> int:
    """Merge ``parts`` (``(prefix, folder)``) into ``output``; returns the number of cases."""
    if output.exists() and any(output.iterdir()):
        raise OnfhError(f"{output}: folder exists and is not empty")
    rows: list[dict] = []
    columns: list[str] = []
    for prefix, folder in parts:
        for files in list_cases(folder):
            new = case_paths(output, prefix + files.case_id)
            _link(files.image_path, new.image_path)
            _link(files.label_path, new.label_path)
            tissues = tissue_map_path(files)
            if tissues.is_file():
                _link(tissues, tissue_map_path(new))
        table = folder / CASES_CSV
        if table.is_file():
            with table.open(newline="", encoding="utf-8") as stream:
                for row in csv.DictReader(stream):
                    row["case_id"] = prefix + row["case_id"]
                    row["image"] = f"{IMAGES_DIR}/{prefix}{Path(row['image']).name}"
                    row["label"] = f"{LABELS_DIR}/{prefix}{Path(row['label']).name}"
                    row["source"] = folder.name
                    columns += [c for c in row if c not in columns]
                    rows.append(row)
    if rows:
        with (output / CASES_CSV).open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
    extra = {
        "name": output.name,
        "sources": {prefix: folder.name for prefix, folder in parts},
        "tissue_maps": (output / TISSUES_DIR).is_dir(),
        "cases_csv": CASES_CSV if rows else None,
    }
    write_dataset_json(output, description="merged synthetic cohorts (not clinical data)", extra=extra)
    return len(list_cases(output))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("parts", nargs="+", help="PREFIX=FOLDER")
    args = parser.parse_args(argv)
    try:
        parts = []
        for part in args.parts:
            prefix, sep, folder = part.partition("=")
            if not sep or not prefix:
                raise OnfhError(f"expected PREFIX=FOLDER, got {part!r}")
            parts.append((prefix + "_", Path(folder)))
        count = merge(args.output, parts)
    except OnfhError as error:
        print(f"merge_datasets: error: {error}", file=sys.stderr)
        return 2
    print(f"merged {count} cases into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
