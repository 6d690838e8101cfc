"""Post or update one sticky pull-request comment through the GitHub REST API (standard library only).

Used by the workflows in ``.github/workflows/`` (docs/gitops.md). It imports nothing outside the
standard library, so the privileged jobs run it straight from a checkout of the **default branch**
(``python3 teeform/github_comment.py ...``) without installing anything and without running PR code.

What it does (GitHub REST API, "Issues > Comments"; a PR is an issue for comments):

1. ``GET /repos/{owner}/{repo}/issues/{n}/comments?per_page=100&page=k`` for k = 1, 2, ... until a
   page has fewer than 100 items (pagination: 30 per page by default, at most 100; reading only the
   first page is how ``pulumi/actions`` misses its own comment on long PRs,
   ``shared/reference/gitops-signing-terraform.md`` §1.1);
2. the first comment whose body starts with the marker (``<!-- teeform-preview -->``) and whose
   author is a bot (``user.type == "Bot"``; ``--any-author`` drops that check) is edited with
   ``PATCH /repos/{owner}/{repo}/issues/comments/{id}``; without one, ``POST .../issues/{n}/comments``
   creates it. So the second run edits the first run's comment, and human comments are never touched.

Untrusted input (the ``workflow_run`` job posts a body produced by a fork's run): the PR number must
be decimal digits (``--pr`` or ``--pr-file``), the repository ``owner/name``, the body strict UTF-8
of at most 1 MiB; the body is capped at 65,000 characters (GitHub's limit is 65,536) with a note,
and is prefixed with the marker when it lacks it. With ``--expect-head-sha`` the PR's head commit
(``GET /repos/{owner}/{repo}/pulls/{n}`` ``head.sha``) must equal the run's head SHA, so an artifact
cannot steer the comment onto another PR. Bad input: one line ``error: <file>: <field>: <message>``,
exit 2; an API failure: one line, exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MARKER = "<!-- teeform-preview -->"
MAX_BODY_CHARS = 65_000
MAX_BODY_BYTES = 1 << 20
PER_PAGE = 100
MAX_PAGES = 100  # 10,000 comments
_REPO = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
TRUNCATED_NOTE = "\n\n:warning: **Truncated** to stay under GitHub's comment limit; the full report is in the job summary.\n"


class InputError(Exception):
    """Bad input: ``where`` (file or option) and ``field``."""

    def __init__(self, where: str, fld: str, message: str) -> None:
        super().__init__(f"{where}: {fld}: {message}")


class ApiError(Exception):
    """The GitHub API answered with an error status (or not at all)."""


@dataclass(frozen=True)
class Result:
    """``action`` is ``created`` or ``updated``; ``comment_id`` the comment's id; ``pages`` listed."""

    action: str
    comment_id: int
    pages: int


Transport = Callable[[str, str, Any], tuple[int, Any]]


def http_transport(api_url: str, token: str, timeout: float = 30.0) -> Transport:
    """A transport for :func:`post_sticky`: ``(method, path, json_body) -> (status, parsed JSON)``
    over ``urllib`` with ``Authorization: Bearer <token>`` and the REST API's media type."""

    def call(method: str, path: str, body: Any) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(api_url.rstrip("/") + path, data=data, method=method, headers={
            "Accept": "application/vnd.github+json", "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "teeform-github-comment",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (https or loopback URL)
                raw = resp.read(8 << 20)
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiError(f"{method} {path}: {exc}") from None

    return call


def cap_body(body: str, marker: str = MARKER, limit: int = MAX_BODY_CHARS) -> str:
    """``body`` starting with ``marker`` and at most ``limit`` characters (cut with a note)."""
    if not body.startswith(marker):
        body = marker + "\n" + body
    if len(body) > limit:
        body = body[: limit - len(TRUNCATED_NOTE)] + TRUNCATED_NOTE
    return body


def _ok(status: int, what: str) -> None:
    if not 200 <= status < 300:
        raise ApiError(f"{what}: HTTP {status}")


def post_sticky(call: Transport, repo: str, pr: int, body: str, *, marker: str = MARKER, any_author: bool = False,
                expect_head_sha: str | None = None) -> Result:
    """Create or edit the one comment of ``pr`` that starts with ``marker`` (module docstring).

    Raises:
        ApiError: an API call failed, or the PR's head is not ``expect_head_sha``.
    """
    if expect_head_sha is not None:
        status, pull = call("GET", f"/repos/{repo}/pulls/{pr}", None)
        _ok(status, f"GET pull {pr}")
        got = (pull or {}).get("head", {}).get("sha") if isinstance(pull, dict) else None
        if got != expect_head_sha:
            raise ApiError(f"PR {pr} has head {got!r}, not the run's head {expect_head_sha!r}: refusing to comment")
    body = cap_body(body, marker)
    found: int | None = None
    page = 0
    for page in range(1, MAX_PAGES + 1):
        status, items = call("GET", f"/repos/{repo}/issues/{pr}/comments?per_page={PER_PAGE}&page={page}", None)
        _ok(status, f"list comments page {page}")
        if not isinstance(items, list):
            raise ApiError(f"list comments page {page}: not a JSON list")
        for c in items:
            if not isinstance(c, dict) or not str(c.get("body") or "").startswith(marker):
                continue
            if any_author or (c.get("user") or {}).get("type") == "Bot":
                found = int(c["id"])
                break
        if found is not None or len(items) < PER_PAGE:
            break
    if found is not None:
        status, _ = call("PATCH", f"/repos/{repo}/issues/comments/{found}", {"body": body})
        _ok(status, f"update comment {found}")
        return Result("updated", found, page)
    status, created = call("POST", f"/repos/{repo}/issues/{pr}/comments", {"body": body})
    _ok(status, "create comment")
    return Result("created", int((created or {}).get("id", 0)), page)


def _read_text(path: str, fld: str, limit: int = MAX_BODY_BYTES) -> str:
    try:
        st = os.stat(path)
        if not os.path.isfile(path):
            raise InputError(path, fld, "not a regular file")
        if st.st_size > limit:
            raise InputError(path, fld, f"larger than {limit} bytes")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputError(path, fld, exc.strerror or "cannot read") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, fld, "not UTF-8") from None


def parse_pr(text: str, where: str) -> int:
    """A PR number: decimal digits only (surrounding whitespace allowed), 1..10^9."""
    s = text.strip()
    if not s.isdigit() or not s.isascii() or len(s) > 9 or int(s) == 0:
        raise InputError(where, "pr", f"must be a positive decimal number, got {s[:40]!r}")
    return int(s)


def main(argv: list[str] | None = None, transport: Transport | None = None) -> int:
    """``python3 teeform/github_comment.py --repo O/R (--pr N | --pr-file F) --body-file F [--expect-head-sha S]``.

    Environment: ``GITHUB_TOKEN`` (required unless ``transport`` is given), ``GITHUB_API_URL``
    (default ``https://api.github.com``; Actions sets it). Exit 0 posted, 1 API failure, 2 bad input.
    """
    ap = argparse.ArgumentParser(prog="github_comment", description="Post or update teeform's sticky PR comment.")
    ap.add_argument("--repo", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--pr")
    g.add_argument("--pr-file")
    ap.add_argument("--body-file", required=True)
    ap.add_argument("--marker", default=MARKER)
    ap.add_argument("--any-author", action="store_true", help="Edit a marked comment of any author (default: bots only).")
    ap.add_argument("--expect-head-sha")
    args = ap.parse_args(argv)
    try:
        if not _REPO.match(args.repo):
            raise InputError("--repo", "repo", f"must be owner/name, got {args.repo[:80]!r}")
        pr = parse_pr(args.pr, "--pr") if args.pr is not None else parse_pr(_read_text(args.pr_file, "pr", 64), args.pr_file)
        if args.expect_head_sha is not None and not _SHA.match(args.expect_head_sha):
            raise InputError("--expect-head-sha", "sha", "must be 40 lowercase hex digits")
        body = _read_text(args.body_file, "body")
        if transport is None:
            token = os.environ.get("GITHUB_TOKEN", "")
            if not token:
                raise InputError("$GITHUB_TOKEN", "token", "not set")
            transport = http_transport(os.environ.get("GITHUB_API_URL", "https://api.github.com"), token)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        r = post_sticky(transport, args.repo, pr, body, marker=args.marker, any_author=args.any_author,
                        expect_head_sha=args.expect_head_sha)
    except ApiError as exc:
        print(f"error: GitHub API: {exc}", file=sys.stderr)
        return 1
    print(f"{r.action} comment {r.comment_id} on {args.repo}#{pr}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
