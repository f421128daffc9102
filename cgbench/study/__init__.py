"""The paper's Table 1: a "real vs fake" perceptual study, served as a local web page.

Protocol (Zhu et al. 2017, after pix2pix): each participant does one session for one method: 10
practice trials with feedback, then 40 scored trials without. A trial shows a real image and a
generated one side by side, in random order; the participant clicks the one they think is real.
A method's score is the percentage of scored trials in which the generated image was chosen,
mean ± standard error over participants who completed their session.

* :mod:`cgbench.study.images`: each run's translations of the validation inputs and the real images
  shown beside them, made once and cached as PNGs of identical size, format and encoding.
* :mod:`cgbench.study.store`: participants, their drawn trials and answers in a sqlite file (WAL,
  one transaction per answer), so a restarted server loses nothing.
* :mod:`cgbench.study.server`: the HTTP app (JSON API + one static page, no internet).
* :mod:`cgbench.study.results`: fooled rates per method, written into each run as MLflow metrics.
"""

PRACTICE_TRIALS = 10
SCORED_TRIALS = 40
DIRECTIONS = ("labels2photo", "photo2labels")
