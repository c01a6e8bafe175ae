"""Explaining trained models: Grad-CAM maps and PNGs (`gradcam`), the target layer chosen by
input size (`layers`), one gallery function for the end of a run and for `lab gradcam`
(`gallery`), and the galleries' index (`index`, no torch)."""
