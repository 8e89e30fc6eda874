"""``onfh demo``: synthesise a hip MRI, segment it, grade it and compare with the truth.

The first quick-start command: it needs no data. The phantom has a fixed seed, so every
install shows the same case; its exact label is the truth the prediction is compared to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEMO_SEED = 5  # an oblique acquisition of a right hip with a grade C lesion (ratio 0.36)
DEMO_CASE = "demo_hip"


def register(subparsers: argparse._SubParsersAction) -> None:
    from onfh.commands.segment import add_model_arguments

    parser = subparsers.add_parser(
        "demo",
        help="synthesise a hip MRI, segment and grade it, compare with the truth",
        description="Synthesise a 3D SPGR hip MRI with a known necrotic lesion (fixed seed), segment it "
        "with the installed model, print volumes, necrotic ratio and Steinberg grade next to the true "
        "values, and write the image, truth, segmentation, report and a PNG preview.",
    )
    parser.add_argument(
        "-o", "--output", default="onfh_demo", metavar="DIR", help="output folder (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="phantom seed (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace the outputs of an earlier demo in DIR")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _ratio_text(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{100 * ratio:.1f} %"


def comparison_table(report: dict, truth: dict, head_dice: float, necrosis_dice: float) -> str:
    """Predicted and true volumes, ratio and grade side by side, with Dice."""
    rows = [
        ("", "predicted", "true"),
        (
            "Femoral head volume",
            f"{report['femoral_head_volume_ml']:.2f} mL",
            f"{truth['head_volume_ml']:.2f} mL",
        ),
        (
            "Necrosis volume",
            f"{report['necrosis_volume_ml']:.2f} mL",
            f"{truth['necrosis_volume_ml']:.2f} mL",
        ),
        ("Necrotic ratio", _ratio_text(report["necrosis_ratio"]), _ratio_text(truth["ratio"])),
        ("Steinberg extent grade", report["steinberg_grade"] or "n/a", truth["grade"] or "n/a"),
    ]
    lines = [f"{a:<24}{b:>12}{c:>12}" for a, b, c in rows]
    lines.append(f"Dice: femoral head {head_dice:.3f}, necrosis {necrosis_dice:.3f}")
    return "\n".join(lines)


def demo_outputs(outdir: Path) -> list[Path]:
    """The files ``onfh demo`` writes into ``outdir``."""
    names = ("{}.nii.gz", "{}_truth.nii.gz", "{}.seg.nrrd", "{}.json", "{}_preview.png")
    return [outdir / name.format(DEMO_CASE) for name in names]


def run(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from onfh.case_segmentation import load_segmenter, segment_case
    from onfh.ensemble import load_ensemble
    from onfh.errors import OnfhError
    from onfh.imageio import write_image_atomic, write_text_atomic
    from onfh.metrics import dice
    from onfh.output_folder import require_writable_folder
    from onfh.preview import write_preview
    from onfh.synthetic import generate_case

    outdir = Path(args.output)
    require_writable_folder(outdir)
    earlier = [path for path in demo_outputs(outdir) if path.exists()]
    if earlier and not args.force:
        raise OnfhError(f"{outdir}: holds an earlier demo ({earlier[0].name}); add --force to replace it")
    segmenter, folder, device_text = load_segmenter(args.model, args.device, args.backend)
    ensemble = load_ensemble(folder, segmenter.model, segmenter.device)
    print(f"Synthesising a hip MRI (seed {args.seed}) ...", flush=True)
    case = generate_case(args.seed)
    outdir.mkdir(parents=True, exist_ok=True)
    image_path = outdir / f"{DEMO_CASE}.nii.gz"
    truth_path = outdir / f"{DEMO_CASE}_truth.nii.gz"
    write_image_atomic(case.image, image_path)
    write_image_atomic(case.label, truth_path)
    print(f"Segmenting with model {folder.id} on {device_text} ...", flush=True)
    image = sitk.Cast(case.image, sitk.sitkFloat32)
    truth = {key: case.info[key] for key in ("head_volume_ml", "necrosis_volume_ml", "ratio", "grade")}
    report = segment_case(
        image_path,
        outdir,
        segmenter,
        folder,
        device_text,
        image=image,
        case=DEMO_CASE,
        extra={"truth": truth},
        ensemble=ensemble,
    )
    predicted = sitk.ReadImage(str(outdir / f"{DEMO_CASE}.seg.nrrd"))
    predicted_array = sitk.GetArrayViewFromImage(predicted)
    truth_array = sitk.GetArrayViewFromImage(case.label)
    head_dice = dice(predicted_array > 0, truth_array > 0)
    necrosis_dice = dice(predicted_array == 2, truth_array == 2)
    preview_path = outdir / f"{DEMO_CASE}_preview.png"
    title = (
        f"onfh demo (seed {args.seed}): predicted grade {report['steinberg_grade']}, "
        f"true grade {truth['grade']}; truth solid, prediction dashed"
    )
    write_preview(case.image, case.label, preview_path, title=title, prediction=predicted)
    print(comparison_table(report, truth, head_dice, necrosis_dice))
    match = report["steinberg_grade"] == truth["grade"]
    print(f"Grade {'matches' if match else 'DOES NOT match'} the synthetic truth.")
    print(f"Segmented in {report['timings_s']['total_s']:.1f} s. Outputs in {outdir}:")
    for path in demo_outputs(outdir):
        print(f"  {path.name}")
    summary = {"grade_matches_truth": match, "dice": {"femoral_head": head_dice, "necrosis": necrosis_dice}}
    write_text_atomic(outdir / f"{DEMO_CASE}.json", json.dumps({**report, **summary}, indent=2) + "\n")
    return 0
