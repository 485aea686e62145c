#!/usr/bin/env bash
# Run a set-up command quietly: its output goes to a log (build/setup.log, or $QUIET_LOG), and is printed only when
# the command fails (then the exit status is the command's). `make V=1 ...` runs commands without this wrapper.
#   tools/quiet.sh COMMAND [ARG...]
set -u
log=${QUIET_LOG:-build/setup.log}
mkdir -p "$(dirname "$log")"
start=0; [ -f "$log" ] && start=$(wc -c <"$log")
printf '\n$ %s\n' "$*" >>"$log"
"$@" >>"$log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
  echo "failed (exit $status): $*" >&2
  tail -c +"$((start + 1))" "$log" >&2
  echo "(full log: $log)" >&2
fi
exit "$status"
