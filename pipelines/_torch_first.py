"""Import torch and torchvision before TensorFlow, where this process has not loaded TensorFlow yet.

Measured here (torch 2.14.1, torchvision 0.29.1, TensorFlow 2.21): importing torchvision after
TensorFlow kills the process with a segmentation fault; the other order works. A process that may
both detect faces (MTCNN: torch) and train (TensorFlow) imports this before TensorFlow. Where
TensorFlow is already loaded (Ray Train's own processes), torch is left out: those never detect faces,
and `preprocess.FaceDetector` refuses to load there instead of crashing.
"""

import sys

if "tensorflow" not in sys.modules:
    import torch  # noqa: F401
    import torchvision  # noqa: F401
