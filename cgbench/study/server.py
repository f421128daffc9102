"""The study's HTTP app: one static page and a small JSON API, on the standard library's server.

    GET  /                                    the page (page.html), GET /study.js its script
    POST /api/participants                    a new participant: {"participant": id, "trial": {...}}
    GET  /api/participants/<id>/trial         their current trial, or {"phase": "done"}
    POST /api/participants/<id>/trials/<n>    {"choice": "left"|"right"} → {"next": {...}} (+ "feedback" in practice)
    GET  /api/images/<token>                  one image (image/png)

A trial as the browser sees it: ``{"phase": "practice"|"scored", "index": k, "of": 10|40,
"trial": n, "left": "/api/images/<token>", "right": "/api/images/<token>"}``, nothing else:
which image is real is known only to the server, which checks every answer against it. Every
image response has the same headers (type, no-store, and a byte length that is the same for real
and generated images of a run) and comes from memory by one token lookup, real or not.
Refusals are JSON ``{"error": ...}`` with 400 (bad request), 404 (unknown participant, trial or
image) or 409 (a trial answered again or out of order).
"""

from __future__ import annotations

import errno
import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

from cgbench.errors import CgbenchError
from cgbench.study import PRACTICE_TRIALS, SCORED_TRIALS
from cgbench.study.images import ImageSet, prepare_images
from cgbench.study.store import DB_NAME, Conflict, NotFound, Store, StudyError, Trial, study_folder

TOKEN = r"[A-Za-z0-9_-]{1,64}"
MAX_BODY = 1024
STATIC = {"/": ("page.html", "text/html; charset=utf-8"), "/study.js": ("study.js", "text/javascript; charset=utf-8")}


def trial_payload(trial: Trial | None) -> dict[str, Any]:
    """What the browser gets of a trial: its phase and place, and two opaque image addresses."""
    if trial is None:
        return {"phase": "done"}
    practice = trial.practice
    return {
        "phase": "practice" if practice else "scored",
        "index": trial.number + 1 if practice else trial.number - PRACTICE_TRIALS + 1,
        "of": PRACTICE_TRIALS if practice else SCORED_TRIALS,
        "trial": trial.number,
        "left": f"/api/images/{trial.left_token}",
        "right": f"/api/images/{trial.right_token}",
    }


class StudyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], store: Store, image_sets: Sequence[ImageSet], direction: str):
        self.store = store
        self.image_sets = {s.run_id: s for s in image_sets}
        self.direction = direction
        self.static = {path: (resources.files("cgbench.study").joinpath(name).read_bytes(), kind)
                       for path, (name, kind) in STATIC.items()}
        super().__init__(address, StudyHandler)

    def served(self, pid: str) -> None:
        """Refuse a participant whose method or direction this server does not show."""
        p = self.store.participant(pid)
        if p.direction != self.direction or p.run_id not in self.image_sets:
            raise Conflict("this session's method is not served now; ask the experimenter")

    def png(self, token: str) -> bytes:
        found = self.store.image(token)
        if found is None or found[0] not in self.image_sets or found[1] != self.direction:
            raise NotFound("unknown image")
        run_id, _, kind, index = found
        image_set = self.image_sets[run_id]
        return (image_set.fakes if kind == "fake" else image_set.reals)[index]


class StudyHandler(BaseHTTPRequestHandler):
    server: StudyServer
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "cgbench-study"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # requests are not logged: the store is the record

    # --- responses ---------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: dict[str, Any], status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _route(self, routes: list[tuple[str, Callable[..., None]]]) -> None:
        try:
            for pattern, action in routes:
                match = re.fullmatch(pattern, self.path.split("?", 1)[0])
                if match:
                    action(*match.groups())
                    return
            raise NotFound("no such address")
        except StudyError as exc:
            self._json({"error": str(exc)}, exc.status)

    # --- GET ---------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (the base class's name)
        self._route([
            (r"(/|/study\.js)", lambda path: self._send(HTTPStatus.OK, *self.server.static[path])),
            (rf"/api/participants/({TOKEN})/trial", self._trial),
            (rf"/api/images/({TOKEN})", lambda token: self._send(HTTPStatus.OK, self.server.png(token), "image/png")),
        ])

    def _trial(self, pid: str) -> None:
        self.server.served(pid)
        self._json(trial_payload(self.server.store.current_trial(pid)))

    # --- POST --------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        try:
            self.body = self._read_body()  # first, so that a refused request leaves no unread bytes
        except StudyError as exc:
            self._json({"error": str(exc)}, exc.status)
            return
        self._route([
            (r"/api/participants", self._new_participant),
            (rf"/api/participants/({TOKEN})/trials/(\d{{1,4}})", self._answer),
        ])

    def _read_body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            raise StudyError(f"the request body must have a Content-Length of at most {MAX_BODY} bytes")
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise StudyError("the request body must be a JSON object")
        return data

    def _new_participant(self) -> None:
        store = self.server.store
        pid = store.new_participant(list(self.server.image_sets.values()), self.server.direction)
        self._json({"participant": pid, "trial": trial_payload(store.current_trial(pid))}, HTTPStatus.CREATED)

    def _answer(self, pid: str, number: str) -> None:
        choice = self.body.get("choice")
        self.server.served(pid)
        store = self.server.store
        trial = store.answer(pid, int(number), choice)
        reply: dict[str, Any] = {"next": trial_payload(store.current_trial(pid))}
        if trial.practice:
            reply["feedback"] = {"correct": not trial.chose_fake, "real": trial.real_side}
        self._json(reply)


def make_server(store: Store, image_sets: Sequence[ImageSet], direction: str, host: str = "127.0.0.1",
                port: int = 0) -> StudyServer:
    """A study server bound to (host, port) (port 0: a free one; see ``server.server_address``)."""
    return StudyServer((host, port), store, image_sets, direction)


def check_comparable(image_sets: Sequence[ImageSet]) -> None:
    """The methods of one study are shown on the same data at the same size."""
    kinds = {(s.dataset, s.digest, s.image_size): s.run_id for s in image_sets}
    if len(kinds) > 1:
        what = "; ".join(f"run {r}: {d} (data {g}) at {n}x{n}" for (d, g, n), r in kinds.items())
        raise CgbenchError(f"the runs differ in validation data or resolution ({what}); a study compares methods "
                           "on the same images: serve runs of one dataset and image size")


def serve(run_ids: Sequence[str], direction: str = "labels2photo", host: str = "127.0.0.1", port: int = 8765,
          tracking_uri: str | None = None, study_dir: str | Path | None = None, device: str = "auto",
          echo: Callable[[str], None] = print) -> None:
    """Prepare the runs' images, open the store and serve the study until interrupted."""
    if not run_ids or len(set(run_ids)) != len(run_ids):
        raise CgbenchError("give each run to study once: --run RUN_ID [--run RUN_ID ...]")
    folder = study_folder(study_dir, tracking_uri)
    image_sets = [prepare_images(tracking_uri, run_id, direction, folder, device) for run_id in run_ids]
    check_comparable(image_sets)
    store = Store(folder / DB_NAME)
    try:
        server = make_server(store, image_sets, direction, host, port)
    except OSError as exc:
        hint = "; pick another --port" if exc.errno == errno.EADDRINUSE else ""
        raise CgbenchError(f"cannot serve on {host}:{port}: {exc.strerror or exc}{hint}") from None
    first = image_sets[0]
    url_host = f"[{host}]" if ":" in host else host
    echo(f"Study {direction}: {len(image_sets)} method(s), {len(first.fakes)} generated and {len(first.reals)} real "
         f"images each at {first.image_size}x{first.image_size} ({first.dataset}). Responses in {store.path}.")
    echo(f"Serving on http://{url_host}:{server.server_address[1]}/ (Ctrl-C stops; answered trials are kept)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("Stopped.")
    finally:
        server.server_close()
