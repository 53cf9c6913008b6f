#!/usr/bin/env bash
# nightly.sh - grow the published checkpoint with the day's files; made to run from cron.
#
# Usage: nightly.sh PUBLISHED.h5 DAY_DIR
#   DAY_DIR holds new_entities.tsv and delta.tsv (and new_relations.tsv if relations are added).
#
# Verify first, publish after, so PUBLISHED.h5 only ever holds a whole file that passed verification:
#   1. extend PUBLISHED.h5 into PUBLISHED.h5.staging (same directory, so the final rename is atomic);
#      nothing to do (the day was already applied): no file is written, exit 0;
#   2. embretrain verify PUBLISHED.h5 PUBLISHED.h5.staging (same names first, every old row
#      bit-identical); on failure the staging file is kept as PUBLISHED.h5.rejected-DATE,
#      PUBLISHED.h5 is not touched, exit 6;
#   3. publish: keep the previous versions as PUBLISHED.h5.1 (newest) .. PUBLISHED.h5.$KEEP and rename
#      the verified file over PUBLISHED.h5, with embretrain's own atomic_write (the code behind
#      `extend --keep`: hard link + rename, PUBLISHED.h5 is never absent or partial).
# Everything is logged with timestamps to the day's log, and nothing else is printed on success, so
# cron mails nothing; on failure stderr gets the failure in one line, this run's last lines of the log
# and the log's path (cron mails that). A staging file left by a run that was killed is removed at the
# start (a symlink planted there is removed as a link).
# Files this script writes itself (the log, the nightly lock) must be regular files or absent: a
# symlink or anything else at their path is refused (exit 2) and left untouched, since a shell
# redirection would write through it. Directories on the way (e.g. LOG_DIR -> /var/log/x) may be links.
#
# Environment:
#   KEEP=7                     previous versions to keep (0: none)
#   LOG_DIR=<dir of PUBLISHED>/logs   one log (and one JSON report of the extend step) per day
#   EMBRETRAIN=embretrain      the CLI (e.g. /opt/embretrain/venv/bin/embretrain)
#   PYTHON=<dir of EMBRETRAIN>/python   the python that has embretrain installed (for the publish step)
#   EXTEND_ARGS=""             extra options for `embretrain extend`, e.g. "--config /etc/embretrain.toml"
#   TAIL_LINES=20              lines of the log shown on failure
#
# Exit codes are embretrain's: 0 ok or nothing to do, 2 usage, 3 bad data, 4 bad checkpoint,
# 5 locked (another run is busy), 6 internal failure (including: verification failed, nothing published).
# Native .h5 checkpoints only (a TF checkpoint is a prefix of several files, not one file to rename).
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
TAIL_LINES=${TAIL_LINES:-20}
[[ $TAIL_LINES =~ ^[0-9]+$ ]] || TAIL_LINES=20
LOG_DIR=${LOG_DIR:-$(dirname -- "$PUBLISHED")/logs}
DAY=$(date +%F)
STAGING=$PUBLISHED.staging
REJECTED=$PUBLISHED.rejected-$DAY

if [[ ! $KEEP =~ ^[0-9]+$ ]]; then
    echo "$0: KEEP must be a whole number >= 0, not '$KEEP'" >&2
    exit 2
fi

mkdir -p -- "$LOG_DIR" || exit 2
LOG=$LOG_DIR/nightly-$DAY.log
REPORT=$LOG_DIR/nightly-$DAY.json

# Refuse to write through a planted symlink (or into a FIFO, a device, a directory): a redirection follows it.
for f in "$LOG" "$PUBLISHED.nightly.lock"; do
    if [[ -L $f ]] || { [[ -e $f ]] && [[ ! -f $f ]]; }; then
        echo "$0: $f is a symbolic link or not a regular file; refusing to write to it (it is left untouched): remove it" >&2
        exit 2
    fi
done

# The day's log may hold earlier runs of the same day: a failure shows only what this run wrote.
LOG_START=0
[[ -f $LOG ]] && LOG_START=$(wc -c <"$LOG")

log() { printf '%s nightly %s\n' "$(date +%Y-%m-%dT%H:%M:%S)" "$*" >>"$LOG"; }

# fail CODE MESSAGE: log it, then tell cron (stderr): the failure, this run's last log lines, the log path.
fail() {
    local code=$1 tail
    shift
    tail=$(tail -c +$((LOG_START + 1)) -- "$LOG" 2>/dev/null | tail -n "$TAIL_LINES")
    log "FAILED: $*"
    {
        printf '%s: FAILED (exit %s): %s\n' "$0" "$code" "$*"
        if [[ -n $tail ]]; then
            printf 'last lines of the log:\n'
            printf '%s\n' "$tail" | sed 's/^/    /'
        fi
        printf 'log: %s\n' "$LOG"
    } >&2
    exit "$code"
}

# One nightly at a time for this checkpoint, covering extend + verify + publish (the CLI's own locks
# only cover one command each: STAGING.lock for extend, PUBLISHED.lock for the publish step below).
# flock(1) is util-linux; without it two nightlies started at once are not kept apart.
if command -v flock >/dev/null 2>&1; then
    exec 9>>"$PUBLISHED.nightly.lock"
    if ! flock -n 9; then
        fail 5 "another nightly run holds $PUBLISHED.nightly.lock"
    fi
fi

# The publish step runs embretrain's Python (no `embretrain` command renames a file into place with
# --keep). Find that python and check it now, before hours of training.
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    if cli=$(command -v -- "$EMBRETRAIN") && cli=$(readlink -f -- "$cli") && [[ -x $(dirname -- "$cli")/python ]]; then
        PYTHON=$(dirname -- "$cli")/python
    fi
fi
# (sys.path[0] == "" is the current directory, where cron or an operator may run us: not embretrain's.)
if ! "$PYTHON" -c 'import sys; sys.path[:1] = [p for p in sys.path[:1] if p]; import embretrain.atomic, embretrain.lock' \
        >/dev/null 2>&1; then
    fail 2 "$PYTHON cannot import embretrain; set PYTHON to the python of $EMBRETRAIN's environment"
fi

if [[ -e $STAGING || -L $STAGING ]]; then
    # Only a run killed between extend and publish leaves one: it was never published, so drop it.
    log "removing $STAGING, left by an earlier run that was killed"
    rm -f -- "$STAGING" 2>>"$LOG" || fail 6 "cannot remove $STAGING"
fi

NEW_RELATIONS=()
if [[ -e $DAY_DIR/new_relations.tsv ]]; then
    NEW_RELATIONS=(--new-relations "$DAY_DIR/new_relations.tsv")
fi

# 1. extend into the staging file (no --keep: a new file has no previous versions).
log "start: growing $PUBLISHED from $DAY_DIR into $STAGING (keep $KEEP)"
# shellcheck disable=SC2086  # EXTEND_ARGS is a list of options on purpose
"$EMBRETRAIN" extend --ckpt "$PUBLISHED" --out "$STAGING" \
    --new-entities "$DAY_DIR/new_entities.tsv" "${NEW_RELATIONS[@]}" --data "$DAY_DIR/delta.tsv" \
    --report "$REPORT" $EXTEND_ARGS >>"$LOG" 2>&1
rc=$?
if [[ $rc -ne 0 ]]; then
    rm -f -- "$STAGING"  # extend writes atomically, so there is none; be sure
    fail "$rc" "embretrain extend exited $rc; $PUBLISHED is unchanged"
fi
if grep -q '"status": "nothing_to_do"' -- "$REPORT"; then
    rm -f -- "$STAGING"  # extend writes nothing when there is nothing to do; be sure
    log "nothing to do: $DAY_DIR was already applied to $PUBLISHED"
    exit 0
fi
if [[ ! -f $STAGING ]]; then
    fail 6 "embretrain extend exited 0 but wrote no $STAGING (a non-.h5 --out-format in EXTEND_ARGS?); $PUBLISHED is unchanged"
fi

# 2. verify the staging file against the published one, which is still the previous version.
"$EMBRETRAIN" verify "$PUBLISHED" "$STAGING" >>"$LOG" 2>&1
vrc=$?
if [[ $vrc -ne 0 ]]; then
    mv -fT -- "$STAGING" "$REJECTED" 2>>"$LOG"  # -T: a directory planted at REJECTED is an error, not a destination
    fail 6 "verification of $STAGING against $PUBLISHED failed (exit $vrc); nothing published, $PUBLISHED is unchanged, rejected file kept as $REJECTED"
fi

# 3. publish. atomic_write(PUBLISHED, keep=KEEP) is what `extend --out PUBLISHED --keep KEEP` runs
# after training: rotate PUBLISHED.1.. up, hard-link PUBLISHED as PUBLISHED.1, rename the new file
# over PUBLISHED, fsync the directory. The staging file (already fsynced by extend) is renamed into
# its temp name, in the same directory. PUBLISHED.lock is the lock `embretrain extend --out
# PUBLISHED` holds, so a manual run on the published file is never renamed over mid-way.
"$PYTHON" - "$PUBLISHED" "$STAGING" "$KEEP" <<'EOF' >>"$LOG" 2>&1
import logging
import os
import sys

sys.path[:1] = [p for p in sys.path[:1] if p]  # not the current directory: the installed embretrain
from embretrain.atomic import atomic_write, clean_stale_temps
from embretrain.lock import output_lock

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
published, staging, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    with output_lock(published):
        clean_stale_temps(published)  # temps of a publish step or an in-place run that was killed
        with atomic_write(published, keep=keep) as tmp:
            os.replace(staging, tmp)
except Exception as err:  # one line, embretrain's exit code (5 locked, 2 directory not writable, else 6)
    print(f"{type(err).__name__}: {err}", file=sys.stderr)
    sys.exit(getattr(err, "exit_code", 6))
EOF
prc=$?
if [[ $prc -ne 0 ]]; then
    [[ $prc -eq 2 || $prc -eq 5 ]] || prc=6  # a python that crashed or was killed: internal failure
    rm -f -- "$STAGING"
    fail "$prc" "publishing $STAGING exited $prc; nothing published, $PUBLISHED still holds the previous version (rerun the day)"
fi
log "done: $PUBLISHED verified and published; report $REPORT"
