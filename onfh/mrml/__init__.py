"""Layer 1: MRML adapters. Take the scene and nodes as arguments; never import Qt.

Runs unchanged inside the Slicer application and under the ``slicer-core`` wheel in
pytest, so everything here is tested on real MRML.
"""
