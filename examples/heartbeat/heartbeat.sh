#!/bin/sh
# Append a line per second to $HEARTBEAT_DIR/heartbeat.log until SIGTERM, then
# record the shutdown and exit 0. As PID 1 the kernel drops signals nobody
# handles, so the trap is what makes `docker stop` prompt.
set -eu

log="${HEARTBEAT_DIR:-/app}/heartbeat.log"
stopping=
trap 'stopping=1' TERM INT

echo "started pid=$$ uid=$(id -u) gid=$(id -g) user=$(id -un)" >> "$log"
n=0
while [ -z "$stopping" ]; do
	n=$((n + 1))
	echo "beat $n" >> "$log"
	# sleep in the background: `wait` returns as soon as the trap fires.
	sleep 1 &
	wait $! || :
done
kill $! 2>/dev/null || :
echo "stopped on TERM after $n beats" >> "$log"
