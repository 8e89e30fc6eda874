"""``onfh synth``: synthetic hip MRIs with exact labels, in the imagesTr/labelsTr layout."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    """Add the ``synth`` sub-command."""
    parser = subparsers.add_parser(
        "synth",
        help="synthesise T1-weighted hip MRIs with exact femoral head and necrosis labels",
        description="Synthesise physics-based 3D SPGR hip MRIs (femoral head, necrotic lesion with "
        "reactive band, surrounding anatomy) with exact labels, written as imagesTr/, labelsTr/, "
        "dataset.json and cases.csv (true volumes, ratio, Steinberg grade, parameters). "
        "Synthetic data: not clinical images.",
    )
    parser.add_argument("outdir", metavar="OUTDIR", help="new or empty output folder")
    parser.add_argument("--cases", type=int, required=True, metavar="N", help="number of cases (>= 1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="cohort seed (default 0)")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="voxel size in mm (default 0.7 0.7 1.0)",
    )
    parser.add_argument(
        "--size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="voxels per axis (default 256 256 120)"
    )
    parser.add_argument(
        "--bilateral",
        action="store_true",
        help="both hips in a wide field of view (default spacing 1.4 1.4 1.0)",
    )
    parser.add_argument("--preview", action="store_true", help="also write previews/<case>.png")
    parser.add_argument(
        "--contrast",
        choices=("spgr", "random"),
        default="spgr",
        help="spgr: physical 3D SPGR signal (default); random: every tissue a random intensity, "
        "texture and resolution (the randomised generator; needs torch and MONAI)",
    )
    parser.add_argument(
        "--orientation",
        metavar="{axial,coronal,sagittal,oblique}",
        help="acquire every case this way (default: axial, coronal or oblique drawn per case; "
        "sagittal only when asked for, so that earlier seeds keep their images)",
    )
    parser.add_argument(
        "--head-diameter-mm",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="draw each femoral head's diameter from MIN-MAX mm (within 38-58; default 42-50)",
    )
    parser.add_argument(
        "--lesion-shape",
        metavar="{cap,wedge,ellipsoid,lobed}",
        help="make every lesion this shape (default: cap or wedge drawn per case; only when asked "
        "for: ellipsoid, a lesion of random proportions anywhere on the upper half of the head, and "
        "lobed, two such ellipsoids merged)",
    )
    parser.add_argument(
        "--collapse-mm",
        type=float,
        default=0.0,
        metavar="D",
        help="push the dome over each lesion in flat by D mm (0-8; a collapsed head, Steinberg "
        "stage III-IV; default 0, never drawn)",
    )
    parser.add_argument(
        "--tissue-maps",
        action="store_true",
        help="also write tissuesTr/<case>.nii.gz (every voxel's tissue), for contrast-randomised training",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the cohort, one progress line per case on stderr, a summary on stdout."""
    from onfh.synthetic import write_cohort

    def progress(done: int, total: int, row: dict) -> None:
        print(
            f"[{done}/{total}] {row['case_id']}: grade {row['grade']}, ratio {row['ratio']:.3f}, "
            f"{row['orientation']}, {row['laterality']}",
            file=sys.stderr,
            flush=True,
        )

    rows = write_cohort(
        args.outdir,
        cases=args.cases,
        seed=args.seed,
        spacing_mm=tuple(args.spacing) if args.spacing else None,
        size=tuple(args.size) if args.size else None,
        bilateral=args.bilateral,
        preview=args.preview,
        progress=progress,
        tissue_maps=args.tissue_maps,
        contrast=args.contrast,
        orientation=args.orientation,
        head_diameter_mm=tuple(args.head_diameter_mm) if args.head_diameter_mm else None,
        lesion_shape=args.lesion_shape,
        collapse_mm=args.collapse_mm,
    )
    grades = {grade: sum(1 for row in rows if row["grade"] == grade) for grade in ("A", "B", "C")}
    counts = ", ".join(f"{grade} {count}" for grade, count in grades.items())
    print(f"wrote {len(rows)} synthetic cases to {args.outdir} (grades: {counts})")
    return 0
