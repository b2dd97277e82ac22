"""The phantom: `render` draws one photo-like face from FACS action units; `synth` writes the four
licensed datasets' stand-ins in their native layouts, with the ground truth beside them."""
