"""onfh: volumetric assessment of femoral head osteonecrosis on 3D MRI.

The engine behind the ONFHSegmentation and ONFHGrading 3D Slicer modules and the
``onfh`` command. Importing it is cheap: torch and monai load only in the functions that
need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
