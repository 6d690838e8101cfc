#!/usr/bin/env bash
# Offline PR preview: build and preview the base and the head checkout, then write the PR comment.
#
#   scripts/pr-preview.sh BASE_DIR HEAD_DIR OUT_DIR [STACK]      (STACK default: dev)
#
# Each checkout gets its own set-up and demo build (scripts/setup.sh, scripts/demo.sh: the EIF and the
# manifest its stack file names), then `teeform preview --stack STACK --json` (exit 1 = mandatory
# violations: the document is still written). The head's teeform renders
# `teeform preview diff base.json head.json --markdown` (docs/gitops.md). A base that cannot be built or
# previewed (e.g. the PR that introduces the stack) is shown as an empty stack (--allow-missing-base).
#
# Writes OUT_DIR/base.json, head.json, comment.md (capped at 65,000 characters for the PR comment) and
# summary.md (the full report, for $GITHUB_STEP_SUMMARY). Runs PR code: use it only in a job without
# secrets and with a read-only token (.github/workflows/teeform-preview.yml).
# Labels: BASE_LABEL / HEAD_LABEL (default: base / head).
set -euo pipefail

if [ "$#" -lt 3 ] || [ "$#" -gt 4 ]; then
  echo "usage: $0 BASE_DIR HEAD_DIR OUT_DIR [STACK]" >&2
  exit 2
fi
base=$(cd "$1" && pwd)
head=$(cd "$2" && pwd)
mkdir -p "$3"
out=$(cd "$3" && pwd)
stack=${4:-dev}
case "$stack" in
  ''|*[!A-Za-z0-9_.-]*) echo "error: STACK must be letters, digits, '.', '_' or '-', got '$stack'" >&2; exit 2 ;;
esac

# build DIR: set-up and demo build of one checkout; its own exit status.
build() {
  (cd "$1" && scripts/setup.sh && scripts/demo.sh >/dev/null)
}

# preview DIR DEST: the JSON preview of STACK; 0 when a document was written (exit 0 or 1).
preview() {
  local rc=0
  (cd "$1" && .venv/bin/teeform preview --stack "$stack" --json) > "$2.tmp" || rc=$?
  if [ "$rc" -le 1 ] && [ -s "$2.tmp" ]; then
    mv "$2.tmp" "$2"
    return 0
  fi
  rm -f "$2.tmp"
  echo "warning: teeform preview --stack $stack failed in $1 (exit $rc)" >&2
  return 1
}

rm -f "$out/base.json" "$out/head.json"
if ! { build "$base" && preview "$base" "$out/base.json"; }; then
  echo "warning: the base could not be previewed; it is shown as an empty stack" >&2
fi
build "$head" || echo "warning: the head's demo build reported an error; previewing what was built" >&2
preview "$head" "$out/head.json"

"$head/.venv/bin/teeform" preview diff "$out/base.json" "$out/head.json" --markdown --allow-missing-base \
  --full-report "$out/summary.md" --base-label "${BASE_LABEL:-base}" --head-label "${HEAD_LABEL:-head}" \
  > "$out/comment.md"
echo "wrote $out/comment.md ($(wc -c < "$out/comment.md") bytes) and $out/summary.md" >&2
