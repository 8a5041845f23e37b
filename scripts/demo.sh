#!/bin/sh
# The whole loop on the bundled workspace, in a temporary copy so the git tree stays clean:
# validate → plan → apply → plan (which must find nothing left to do).
set -eu
segops="$1"
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/segops-demo.XXXXXX")
cp -R "$here/manifests/." "$work/"
step() { printf '\n\033[1m$ segops %s\033[0m\n' "$*"; }

step validate
"$segops" -C "$work" validate
step plan -out plan.segplan
"$segops" -C "$work" plan -out "$work/plan.segplan"
step apply plan.segplan
"$segops" -C "$work" apply "$work/plan.segplan"
step plan --detailed-exitcode
"$segops" -C "$work" plan --detailed-exitcode

printf '\nFiles written by the `files` connections (what would have been sent):\n'
(cd "$work" && find out -type f | sort | sed 's/^/  /')
printf '\nState: %s/.segops/state.json\nWorkspace copy: %s\n' "$work" "$work"
