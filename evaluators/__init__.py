"""Evaluators: how generated images are scored with the paper's protocol.

The FCN score (labels→photo, ``evaluators.fcn``) segments each generated photo with a segmenter
trained on real photos; photo→labels (``evaluators.seg``) scores the generated colour label maps
directly by nearest train-class colour. Both accumulate one confusion matrix over the whole split
and report per-pixel accuracy, per-class accuracy and class IoU, computed as in the public
evaluation script (see ``evaluators.confusion``).

Every evaluator — these two and any third-party one — is a subclass of
``evaluators.base.Evaluator`` registered under the entry-point group ``cgbench.evaluators`` and
found by ``evaluators.base.discover()``; ``cgbench eval --list`` shows them.
"""
