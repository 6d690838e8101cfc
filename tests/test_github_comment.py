"""The sticky-comment poster against a loopback fake of the GitHub REST API.

The fake implements the four endpoints the poster uses, as GitHub documents them (REST API "Issues >
Comments": list with ``per_page``/``page``, create, update by id; "Pulls": get): it paginates, so a
PR with more than 100 comments is covered. The poster runs as the workflows run it: ``python3
teeform/github_comment.py`` as a standalone script (default-branch checkout, nothing installed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "teeform" / "github_comment.py"
MARKER = "<!-- teeform-preview -->"
HEAD_SHA = "a" * 40


class FakeGitHub:
    """State: comments of PR 7 in ``owner/repo``; a log of (method, path)."""

    def __init__(self) -> None:
        self.comments: list[dict] = []
        self.next_id = 1000
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, body: str, user_type: str = "User", login: str = "alice") -> dict:
        c = {"id": self.next_id, "body": body, "user": {"login": login, "type": user_type}}
        self.next_id += 1
        self.comments.append(c)
        return c


def make_handler(gh: FakeGitHub):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, code: int, doc) -> None:
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _auth(self) -> bool:
            if self.headers.get("Authorization") != "Bearer test-token":
                self._send(401, {"message": "Bad credentials"})
                return False
            return True

        def do_GET(self):
            u = urlparse(self.path)
            with gh.lock:
                gh.log.append(("GET", u.path))
            if not self._auth():
                return
            if u.path == "/repos/owner/repo/issues/7/comments":
                q = parse_qs(u.query)
                per = min(int(q.get("per_page", ["30"])[0]), 100)
                page = int(q.get("page", ["1"])[0])
                self._send(200, gh.comments[(page - 1) * per: page * per])
            elif u.path == "/repos/owner/repo/pulls/7":
                self._send(200, {"number": 7, "head": {"sha": HEAD_SHA}})
            else:
                self._send(404, {"message": "Not Found"})

        def _body(self):
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

        def do_POST(self):
            with gh.lock:
                gh.log.append(("POST", self.path))
            if not self._auth():
                return
            if self.path == "/repos/owner/repo/issues/7/comments":
                c = gh.add(self._body()["body"], "Bot", "github-actions[bot]")
                self._send(201, c)
            else:
                self._send(404, {"message": "Not Found"})

        def do_PATCH(self):
            with gh.lock:
                gh.log.append(("PATCH", self.path))
            if not self._auth():
                return
            prefix = "/repos/owner/repo/issues/comments/"
            if self.path.startswith(prefix):
                cid = int(self.path[len(prefix):])
                for c in gh.comments:
                    if c["id"] == cid:
                        c["body"] = self._body()["body"]
                        self._send(200, c)
                        return
            self._send(404, {"message": "Not Found"})

    return H


@pytest.fixture
def github():
    gh = FakeGitHub()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(gh))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield gh, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def post(url: str, tmp_path: Path, body: str, *extra: str, token: str = "test-token") -> subprocess.CompletedProcess:
    f = tmp_path / "comment.md"
    f.write_text(body)
    env = {**os.environ, "GITHUB_API_URL": url, "GITHUB_TOKEN": token}
    return subprocess.run([sys.executable, "-I", str(SCRIPT), "--repo", "owner/repo", "--body-file", str(f), *extra],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_second_run_edits_the_first_comment(github, tmp_path):
    gh, url = github
    for i in range(130):  # more than one page of 100
        gh.add(f"human comment {i}")
    gh.add(MARKER + "\na human quoting the marker")  # a human's comment is never edited
    r1 = post(url, tmp_path, f"{MARKER}\nfirst run", "--pr", "7")
    assert r1.returncode == 0, r1.stderr
    mine = [c for c in gh.comments if c["user"]["type"] == "Bot"]
    assert len(mine) == 1 and mine[0]["body"] == f"{MARKER}\nfirst run"
    assert r1.stdout.strip() == f"created comment {mine[0]['id']} on owner/repo#7"
    r2 = post(url, tmp_path, "second run without the marker", "--pr", "7")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.strip() == f"updated comment {mine[0]['id']} on owner/repo#7"
    bots = [c for c in gh.comments if c["user"]["type"] == "Bot"]
    assert len(bots) == 1 and bots[0]["body"] == f"{MARKER}\nsecond run without the marker"
    assert len(gh.comments) == 132
    assert gh.comments[130]["body"] == MARKER + "\na human quoting the marker"
    assert ("PATCH", f"/repos/owner/repo/issues/comments/{mine[0]['id']}") in gh.log
    assert sum(1 for m, _ in gh.log if m == "POST") == 1


def test_body_is_capped(github, tmp_path):
    gh, url = github
    r = post(url, tmp_path, MARKER + "\n" + "x" * 70_000, "--pr", "7")
    assert r.returncode == 0, r.stderr
    body = gh.comments[-1]["body"]
    assert len(body) <= 65_000 and body.startswith(MARKER) and "Truncated" in body


def test_untrusted_artifact_inputs(github, tmp_path):
    gh, url = github
    (tmp_path / "pr.txt").write_text("7; rm -rf /\n")
    r = post(url, tmp_path, "body", "--pr-file", str(tmp_path / "pr.txt"))
    assert r.returncode == 2 and r.stderr.startswith(f"error: {tmp_path / 'pr.txt'}: pr: must be a positive decimal number")
    (tmp_path / "pr.txt").write_text("7\n")
    r = post(url, tmp_path, "body", "--pr-file", str(tmp_path / "pr.txt"), "--expect-head-sha", "b" * 40)
    assert r.returncode == 1 and "not the run's head" in r.stderr and gh.comments == []
    r = post(url, tmp_path, "body", "--pr-file", str(tmp_path / "pr.txt"), "--expect-head-sha", HEAD_SHA)
    assert r.returncode == 0 and len(gh.comments) == 1
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe")
    r = subprocess.run([sys.executable, "-I", str(SCRIPT), "--repo", "owner/repo", "--pr", "7", "--body-file",
                        str(tmp_path / "bad.md")], env={**os.environ, "GITHUB_API_URL": url, "GITHUB_TOKEN": "t"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'bad.md'}: body: not UTF-8"
    r = post(url, tmp_path, "body", "--pr", "7", token="wrong")
    assert r.returncode == 1 and "HTTP 401" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-I", str(SCRIPT), "--repo", "owner/repo;x", "--pr", "7", "--body-file",
                        str(tmp_path / "bad.md")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--repo: repo: must be owner/name" in r.stderr


def test_script_is_standard_library_only():
    """The privileged jobs run it without installing anything: only stdlib imports."""
    import ast

    tree = ast.parse(SCRIPT.read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}, mods
