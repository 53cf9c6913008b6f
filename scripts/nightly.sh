#!/usr/bin/env bash
# nightly.sh - grow the published checkpoint with the day's files; made to run from cron.
#
# Usage: nightly.sh PUBLISHED.h5 DAY_DIR
#   DAY_DIR holds new_entities.tsv and delta.tsv (and new_relations.tsv if relations are added).
#
# Steps: extend PUBLISHED.h5 in place (atomic; the previous version is kept as PUBLISHED.h5.1 ..
# PUBLISHED.h5.$KEEP), verify the new file against the previous one (old rows bit-identical),
# roll back if verification fails, and log everything with timestamps. Rerunning a day that
# already succeeded is a no-op (exit 0). Output goes to the log and to stderr (cron mail).
#
# Environment:
#   KEEP=7                     previous versions to keep
#   LOG_DIR=<dir of PUBLISHED>/logs   one log (and one JSON report) per day
#   EMBRETRAIN=embretrain      the CLI (e.g. /opt/embretrain/venv/bin/embretrain)
#   EXTEND_ARGS=""             extra options for `embretrain extend`, e.g. "--config /etc/embretrain.toml"
#
# Exit codes are embretrain's: 0 ok or nothing to do, 2 usage, 3 bad data, 4 bad checkpoint,
# 5 locked (another run is busy), 6 internal failure (including: verification failed, rolled back).
set -uo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 PUBLISHED.h5 DAY_DIR" >&2
    exit 2
fi
PUBLISHED=$1
DAY_DIR=$2
KEEP=${KEEP:-7}
EMBRETRAIN=${EMBRETRAIN:-embretrain}
EXTEND_ARGS=${EXTEND_ARGS:-}
LOG_DIR=${LOG_DIR:-$(dirname -- "$PUBLISHED")/logs}
DAY=$(date +%F)

mkdir -p -- "$LOG_DIR" || exit 2
LOG=$LOG_DIR/nightly-$DAY.log
REPORT=$LOG_DIR/nightly-$DAY.json

log() { printf '%s nightly %s\n' "$(date +%Y-%m-%dT%H:%M:%S)" "$*" | tee -a -- "$LOG" >&2; }

# One nightly at a time for this checkpoint, covering extend + verify + rollback. (The CLI's own lock,
# PUBLISHED.lock, only covers the extend step.) flock(1) is util-linux; without it we rely on that lock.
if command -v flock >/dev/null 2>&1; then
    exec 9>>"$PUBLISHED.nightly.lock"
    if ! flock -n 9; then
        log "another nightly run holds $PUBLISHED.nightly.lock; exiting"
        exit 5
    fi
fi

NEW_RELATIONS=()
if [[ -e $DAY_DIR/new_relations.tsv ]]; then
    NEW_RELATIONS=(--new-relations "$DAY_DIR/new_relations.tsv")
fi

log "start: growing $PUBLISHED from $DAY_DIR (keep $KEEP)"
# shellcheck disable=SC2086  # EXTEND_ARGS is a list of options on purpose
"$EMBRETRAIN" extend --ckpt "$PUBLISHED" --out "$PUBLISHED" \
    --new-entities "$DAY_DIR/new_entities.tsv" "${NEW_RELATIONS[@]}" --data "$DAY_DIR/delta.tsv" \
    --keep "$KEEP" --report "$REPORT" $EXTEND_ARGS 2>&1 | tee -a -- "$LOG" >&2
rc=${PIPESTATUS[0]}
if [[ $rc -ne 0 ]]; then
    log "FAILED: embretrain extend exited $rc; $PUBLISHED is unchanged (see $LOG)"
    exit "$rc"
fi
if grep -q '"status": "nothing_to_do"' -- "$REPORT"; then
    log "nothing to do: $DAY_DIR was already applied to $PUBLISHED"
    exit 0
fi

PREVIOUS=$PUBLISHED.1
if "$EMBRETRAIN" verify --help >/dev/null 2>&1; then
    "$EMBRETRAIN" verify "$PREVIOUS" "$PUBLISHED" 2>&1 | tee -a -- "$LOG" >&2
    vrc=${PIPESTATUS[0]}
else  # older embretrain without `verify`: the same check with h5py
    PYTHON=$(dirname -- "$(command -v "$EMBRETRAIN")")/python
    [[ -x $PYTHON ]] || PYTHON=python3
    "$PYTHON" - "$PREVIOUS" "$PUBLISHED" <<'EOF' 2>&1 | tee -a -- "$LOG" >&2
import sys
import numpy as np
from embretrain.checkpoint import native
old, new = (native.load(p) for p in sys.argv[1:3])  # checks every sha256 and rejects NaN/Inf
assert new.entities[: old.n_entities] == old.entities, "entity names changed"
for name, table in old.tables().items():
    assert np.array_equal(new.tables()[name][: len(table)], table), f"old rows of {name} changed"
print(f"OK: {sys.argv[2]} extends {sys.argv[1]}")
EOF
    vrc=${PIPESTATUS[0]}
fi
if [[ $vrc -ne 0 ]]; then
    # Put the previous version back (one atomic rename); the failed file is kept for inspection.
    cp -p -- "$PUBLISHED" "$PUBLISHED.rejected-$DAY" && mv -f -- "$PREVIOUS" "$PUBLISHED"
    log "FAILED: verification of $PUBLISHED failed (exit $vrc); rolled back to the previous version, rejected file kept as $PUBLISHED.rejected-$DAY"
    exit 6
fi
log "done: $PUBLISHED verified and published; report $REPORT"
