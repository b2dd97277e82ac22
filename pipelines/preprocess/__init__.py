"""Preprocessing, one step a module: `decode` (validate a file), `faces` (MTCNN and the crop), `background`
(U2-Net, GrabCut or none), and `preprocessor` (the steps in order, the stored settings)."""
