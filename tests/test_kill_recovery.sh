#!/usr/bin/env bash
# kill -9 recovery of the live daemon (tailer-reliability.md 9.2 #15, shortened): a writer
# appends arrivals from unique mailboxes m<seq>@bench.example and rotates the log (rename +
# create) about once a second while floodgated is SIGKILLed at random points and restarted,
# at least 50 times. Oracle: distinct identities counted == lines written (a lost line means
# one identity fewer); a line counted twice trips the rule "messages above 1 in 24h" (one
# audit trip line), and such duplicates must not exceed the lines written in the second
# before each kill. Also: a first start killed before its first checkpoint loses nothing.
# Bounded to about 40 s. FG_KILL_SEED reproduces a run (the seed is printed).
set -euo pipefail
: "${FG_BUILD_DIR:?}" "${FG_SOURCE_DIR:?}"
seed=()
[ -n "${FG_KILL_SEED:-}" ] && seed=(--seed "$FG_KILL_SEED")
exec python3 "$FG_SOURCE_DIR/tests/bench/fgbench.py" "$FG_BUILD_DIR" kill --check \
    --cycles "${FG_KILL_CYCLES:-60}" --rate 2000 --max-kill-delay 0.8 --rotate-every 1 "${seed[@]}"
