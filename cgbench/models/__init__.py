"""Networks: the CycleGAN generator and discriminator, and the evaluator segmenter."""
