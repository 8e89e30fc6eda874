"""``onfh export``: add ONNX files (what inference runs by default) to an existing model folder.

``onfh train`` writes them itself; this is for folders trained before it did, and for
making a shipped folder ONNX-only (``--drop-torch-weights``). Needs torch, MONAI and onnx.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the ONNX files of a model folder (needs torch)",
        description="Export the localiser and segmenter of MODEL_DIR/model.pt to localiser.onnx and "
        "segmenter.onnx (opset 17, checked against torch) and record their sha256 in model.json.",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="model folder holding model.pt and model.json")
    parser.add_argument(
        "--drop-torch-weights",
        action="store_true",
        help="then delete model.pt: the ONNX files carry the same weights, for torch too (halves the folder)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onfh.onnx_export import export_model_folder

    folder = export_model_folder(args.model_dir, drop_torch_weights=args.drop_torch_weights)
    for stage in ("localiser", "segmenter"):
        entry = folder.config["onnx"][stage]
        size_mb = (folder.path / entry["file"]).stat().st_size / 1e6
        print(f"{folder.path / entry['file']}: {size_mb:.1f} MB, sha256 {entry['sha256'][:12]}...")
    if args.drop_torch_weights:
        print(f"removed {folder.weights_path.name}; model.json keeps its sha256 as the weights' identity")
    return 0
