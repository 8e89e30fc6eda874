"""Synthetic T1-weighted 3D SPGR hip MRIs with exact femoral head and necrosis labels.

No public hip MRI data set carries femoral head or necrosis labels, so these phantoms are
the project's training, test, demo and benchmark data. Public API:

- :func:`generate_case` -> :class:`SyntheticCase` (``.image``, ``.label``, ``.info``)
- :func:`write_cohort`: a data set in the ``imagesTr``/``labelsTr``/``dataset.json`` layout
  plus ``cases.csv``.
"""

from __future__ import annotations

from onfh.synthetic.cohort import write_cohort
from onfh.synthetic.phantom import SyntheticCase, generate_case

__all__ = ["SyntheticCase", "generate_case", "write_cohort"]
