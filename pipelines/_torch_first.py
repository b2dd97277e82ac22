"""Import torch before TensorFlow can be imported into this process.

Measured here (torch 2.14.1, torchvision 0.29.1, TensorFlow 2.21): importing torchvision after TensorFlow kills the process
with a segmentation fault, while the other order works. MTCNN needs torch and training needs
TensorFlow, so every module that may bring TensorFlow in imports this first.
"""

import torch  # noqa: F401
import torchvision  # noqa: F401  (the crash comes with torchvision too: MTCNN needs it)
