"""Participants, their trials and answers, stored durably in one sqlite file.

The file is opened in WAL mode with ``synchronous=FULL``; a new participant (with all of their
drawn trials) and each answer are one transaction each, committed before the server replies.
A server killed at any moment therefore loses no answered trial, and a participant who comes
back continues at their first unanswered trial.

A participant is assigned, when created, the method (run) with the fewest completed sessions in
the served direction; ties go to the fewest sessions started, then to the order the runs were
given. Their 50 trials are drawn at once from a random per-participant seed (stored): generated
images in rounds of random permutations of the run's validation images; beside each, a real image
from an independent permutation, redrawn until no generated image meets its own target (a
derangement, when the split is paired); the generated image's side, left or right, at random.
Every image of every trial gets its own random token, the only name the browser ever sees.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cgbench.errors import CgbenchError
from cgbench.study import PRACTICE_TRIALS, SCORED_TRIALS
from cgbench.study.images import ImageSet

SIDES = ("left", "right")
DB_NAME = "study.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    step INTEGER NOT NULL,              -- the checkpoint iteration of the images shown
    seed INTEGER NOT NULL,              -- drew the trials
    created REAL NOT NULL,
    completed REAL                      -- when the last scored trial was answered
);
CREATE TABLE IF NOT EXISTS trials (
    participant_id TEXT NOT NULL REFERENCES participants(id),
    number INTEGER NOT NULL,            -- 0-based; the first PRACTICE_TRIALS are practice
    practice INTEGER NOT NULL,
    fake_index INTEGER NOT NULL,
    real_index INTEGER NOT NULL,
    fake_side TEXT NOT NULL CHECK (fake_side IN ('left', 'right')),
    left_token TEXT NOT NULL UNIQUE,
    right_token TEXT NOT NULL UNIQUE,
    choice TEXT CHECK (choice IN ('left', 'right')),
    answered REAL,
    PRIMARY KEY (participant_id, number)
);
"""


def study_folder(study_dir: str | Path | None, tracking_uri: str | None) -> Path:
    """Where a study keeps its database and images: ``study_dir`` when given, else ``study/`` beside
    the MLflow store at ``tracking_uri`` (the sqlite file or the ``mlruns`` folder; None: MLflow's
    default); for a remote store, ``./study``."""
    from urllib.parse import unquote, urlparse

    if study_dir:
        return Path(study_dir)
    if tracking_uri is None:
        import mlflow

        tracking_uri = mlflow.get_tracking_uri()
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite" and parsed.path not in ("", "/", "/:memory:"):
        return Path(unquote(parsed.path[1:])).resolve().parent / "study"  # sqlite:///rel, sqlite:////abs
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path)).resolve().parent / "study"
    return Path("study").resolve()


class StudyError(CgbenchError):
    """A request the study refuses; ``status`` is its HTTP status."""

    status = 400


class NotFound(StudyError):
    status = 404


class Conflict(StudyError):
    status = 409


@dataclass(frozen=True)
class Trial:
    participant_id: str
    number: int
    practice: bool
    fake_index: int
    real_index: int
    fake_side: str
    left_token: str
    right_token: str
    choice: str | None = None

    @property
    def real_side(self) -> str:
        return "right" if self.fake_side == "left" else "left"

    @property
    def chose_fake(self) -> bool | None:
        return None if self.choice is None else self.choice == self.fake_side


@dataclass(frozen=True)
class Participant:
    id: str
    run_id: str
    direction: str
    step: int
    completed: bool


@dataclass(frozen=True)
class Session:
    """A completed session: its participant and the scored trials' answers (True: chose the generated image)."""

    participant: Participant
    chose_fake: tuple[bool, ...]


def draw_trials(seed: int, n_fake: int, n_real: int, paired: bool,
                count: int = PRACTICE_TRIALS + SCORED_TRIALS) -> list[tuple[int, int, str]]:
    """``count`` trials (generated index, real index, side of the generated image), see the module doc."""
    rng = np.random.default_rng(seed)
    trials: list[tuple[int, int, str]] = []
    while len(trials) < count:
        fakes = rng.permutation(n_fake)
        reals = np.resize(rng.permutation(n_real), n_fake)
        while paired and np.any(reals == fakes):
            reals = rng.permutation(reals)
        sides = rng.integers(0, 2, n_fake)
        trials += [(int(f), int(r), SIDES[int(s)]) for f, r, s in zip(fakes, reals, sides)]
    return trials[:count]


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (transactions are explicit), closed afterwards."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- participants ----------------------------------------------------------------------
    def new_participant(self, image_sets: Sequence[ImageSet], direction: str) -> str:
        """Create a participant, assign a method (see the module doc) and draw their trials."""
        with self._transaction() as db:
            counts = dict.fromkeys([s.run_id for s in image_sets], (0, 0))
            for run_id, done, started in db.execute(
                    "SELECT run_id, COUNT(completed), COUNT(*) FROM participants WHERE direction = ? GROUP BY run_id",
                    (direction,)):
                if run_id in counts:
                    counts[run_id] = (done, started)
            order = list(counts)
            chosen = min(image_sets, key=lambda s: (*counts[s.run_id], order.index(s.run_id)))
            pid, seed = secrets.token_urlsafe(16), secrets.randbits(62)
            db.execute("INSERT INTO participants (id, run_id, direction, step, seed, created) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (pid, chosen.run_id, direction, chosen.step, seed, time.time()))
            draws = draw_trials(seed, len(chosen.fakes), len(chosen.reals), chosen.paired)
            db.executemany(
                "INSERT INTO trials (participant_id, number, practice, fake_index, real_index, fake_side, left_token, "
                "right_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(pid, n, n < PRACTICE_TRIALS, f, r, side, secrets.token_urlsafe(16), secrets.token_urlsafe(16))
                 for n, (f, r, side) in enumerate(draws)])
        return pid

    def participant(self, pid: str) -> Participant:
        with self._connect() as db:
            row = db.execute("SELECT id, run_id, direction, step, completed IS NOT NULL FROM participants "
                             "WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise NotFound("unknown participant")
        return Participant(row[0], row[1], row[2], row[3], bool(row[4]))

    # --- trials ------------------------------------------------------------------------------
    _TRIAL = ("SELECT participant_id, number, practice, fake_index, real_index, fake_side, left_token, right_token, "
              "choice FROM trials ")

    def current_trial(self, pid: str) -> Trial | None:
        """The participant's first unanswered trial; None when their session is complete."""
        self.participant(pid)
        with self._connect() as db:
            row = db.execute(self._TRIAL + "WHERE participant_id = ? AND choice IS NULL ORDER BY number LIMIT 1",
                             (pid,)).fetchone()
        return None if row is None else Trial(*row[:2], bool(row[2]), *row[3:])

    def answer(self, pid: str, number: int, choice: str) -> Trial:
        """Record ``choice`` for trial ``number``: only the participant's current trial, only once."""
        if choice not in SIDES:
            raise StudyError(f"choice must be 'left' or 'right', not {choice!r}")
        with self._transaction() as db:
            row = db.execute(self._TRIAL + "WHERE participant_id = ? AND number = ?", (pid, number)).fetchone()
            if row is None:
                raise NotFound("unknown trial")
            if row[8] is not None:
                raise Conflict("this trial is already answered")
            first_open = db.execute("SELECT MIN(number) FROM trials WHERE participant_id = ? AND choice IS NULL",
                                    (pid,)).fetchone()[0]
            if number != first_open:
                raise Conflict("trials are answered in order; this is not the current trial")
            now = time.time()
            db.execute("UPDATE trials SET choice = ?, answered = ? WHERE participant_id = ? AND number = ?",
                       (choice, now, pid, number))
            if number == PRACTICE_TRIALS + SCORED_TRIALS - 1:
                db.execute("UPDATE participants SET completed = ? WHERE id = ?", (now, pid))
        return Trial(*row[:2], bool(row[2]), *row[3:8], choice)

    def image(self, token: str) -> tuple[str, str, str, int] | None:
        """(run id, direction, "fake" or "real", index) of an image token; None when unknown."""
        with self._connect() as db:
            row = db.execute(
                "SELECT p.run_id, p.direction, t.fake_side, t.left_token, t.fake_index, t.real_index FROM trials t "
                "JOIN participants p ON p.id = t.participant_id WHERE t.left_token = ? OR t.right_token = ?",
                (token, token)).fetchone()
        if row is None:
            return None
        run_id, direction, fake_side, left_token, fake_index, real_index = row
        side = "left" if token == left_token else "right"
        return (run_id, direction, "fake", fake_index) if side == fake_side else (run_id, direction, "real", real_index)

    # --- results -------------------------------------------------------------------------------
    def completed_sessions(self, direction: str) -> list[Session]:
        """Every completed session of ``direction``, oldest first (incomplete ones never count)."""
        with self._connect() as db:
            people = db.execute("SELECT id, run_id, direction, step FROM participants WHERE direction = ? AND "
                                "completed IS NOT NULL ORDER BY completed", (direction,)).fetchall()
            sessions = []
            for pid, run_id, dir_, step in people:
                rows = db.execute("SELECT choice = fake_side FROM trials WHERE participant_id = ? AND practice = 0 "
                                  "ORDER BY number", (pid,)).fetchall()
                sessions.append(Session(Participant(pid, run_id, dir_, step, True), tuple(bool(r[0]) for r in rows)))
        return sessions
