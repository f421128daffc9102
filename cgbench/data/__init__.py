"""Datasets for the Cityscapes study: the label space, the SynthCity generator and the loaders
for the Cityscapes, pix2pix (aligned) and CycleGAN (unaligned) folder layouts."""
