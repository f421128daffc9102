"""Evaluators: how generated images are scored with the paper's protocol.

The FCN score (labels→photo, ``evaluators.fcn``) segments each generated photo with a segmenter
trained on real photos (or the published FCN-8s, the public script's way:
``evaluators.published_fcn``); photo→labels (``evaluators.seg``) scores the generated colour label
maps directly by nearest train-class colour. Both accumulate one confusion matrix over the whole
split (``evaluators.base.ConfusionEvaluator``) and report per-pixel accuracy, per-class accuracy
and class IoU, computed as in the public evaluation script (``cgbench.confusion``). fid and kid
(``evaluators.inception``) and fd-fcn (``evaluators.fd_fcn``) are distances to the real photos.

Every evaluator, these and any third-party one, is a subclass of ``cgbench.plugins.Evaluator``
registered under the entry-point group ``cgbench.evaluators`` and found by
``cgbench.plugins.discover()``; ``cgbench eval --list`` shows them. This package uses cgbench's
core (protocol, data, models, confusion, plugins, errors, timing); cgbench reaches it only
through the entry points.
"""
