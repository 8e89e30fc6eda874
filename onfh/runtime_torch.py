"""The PyTorch backend: runs the networks of a ``TwoStageModel`` (``--backend torch``).

For GPU users who have torch anyway, for training-time validation, and for the tests that
prove both backends label the same voxels. Imported only when that backend is chosen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def torch_probabilities(network: Any, array: np.ndarray, device: Any) -> np.ndarray:
    """Softmax class probabilities ``[C, z, y, x]`` (float32) for one ``[1, z, y, x]`` input."""
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0).to(device)
        logits = network(tensor)
        if isinstance(logits, (list, tuple)):  # deep supervision heads: the first is full size
            logits = logits[0]
        if logits.dim() == 6:  # DynUNet in training mode stacks supervision heads
            logits = logits[:, 0]
        probabilities = torch.softmax(logits.float(), dim=1)[0]
        return probabilities.cpu().numpy()
