"""Evaluators: how generated images are scored with the paper's protocol.

The FCN score (labels→photo) segments each generated photo with a segmenter trained on real
photos; photo→labels scores the generated label maps directly. Both accumulate one confusion
matrix over the whole split and report per-pixel accuracy, per-class accuracy and class IoU,
computed as in the public evaluation script (see ``evaluators.confusion``).
"""
