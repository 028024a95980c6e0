# shellcheck shell=sh disable=SC2034,SC2153,SC2154 # shares the variables of the entrypoint, which sources it
# The entrypoint's advice, sourced by /usr/local/bin/entrypoint only when it
# has a suspect (a mount the app may not write, a device it may not open, an
# account file it could not change): why, and the start that fixes it. It
# decides nothing but the stop of a MAP_NODE_UID no one here can fix, and
# reads what only advice needs (the uid map, the engine) only here.

# Where root stands: in a user namespace whose uid 0 is host uid ns_host. A
# one-uid mapping of root is a rootless engine: root here is the invoking host
# user. A range is a remapping daemon (dockerd --userns-remap).
ns_host=0 ns_count=0
while read -r m_in m_out m_count; do
	if [ "$m_in" = 0 ]; then
		ns_host=$m_out ns_count=$m_count
	fi
done <"$root/proc/self/uid_map"
# Podman marks its containers with both; --read-only hides /run/.containerenv under a fresh tmpfs.
engine=docker
if [ "${container:-}" = podman ] || [ -e "$root/run/.containerenv" ]; then
	engine=podman
fi

# The host uid behind container uid $1 (empty when it is unmapped).
host_uid() {
	while read -r m_in m_out m_count; do
		if [ "$1" -ge "$m_in" ] && [ "$1" -lt $((m_in + m_count)) ]; then
			printf '%s' $((m_out + $1 - m_in))
			return
		fi
	done <"$root/proc/self/uid_map"
}

# Can uid $1 (gid $2) write a node owned by $3:$4 with octal mode $5 (and
# search it, if $6 is a directory)? Owner, group, other: the first class that
# applies decides, as the kernel does. Supplementary groups count when the app
# runs as the named account ($7 = 1).
can_write() {
	bits=2
	[ ! -d "$root$6" ] || bits=3
	if [ "$1" = 0 ]; then
		return 0
	elif [ "$1" = "$3" ]; then
		[ $(((0$5 >> 6) & bits)) = "$bits" ]
	elif [ "$2" = "$4" ] || { [ "$7" = 1 ] && member_of "$4"; }; then
		[ $(((0$5 >> 3) & bits)) = "$bits" ]
	else
		[ $((0$5 & bits)) = "$bits" ]
	fi
}

# The one line that says how to give the account data the host user owns,
# under a user namespace where nothing inside the container can.
userns_fix() {
	if [ "$ns_count" = 1 ] && [ "$engine" = podman ]; then
		printf 'run podman with --userns=keep-id:uid=%s,gid=%s so your host uid is %s here' "$uid" "$gid" "$user"
	elif [ "$ns_count" = 1 ]; then
		printf 'set USER_ID=0 ALLOW_ROOT_ID=1: root in this rootless container is you on the host'
	else
		printf 'this engine maps container uids to host uids %s and up (its subuid range), so on the host chown it to %s:%s (%s here), or run with --userns=host' \
			"$ns_host" "$(host_uid "$uid")" "$((ns_host + gid))" "$user"
	fi
}

# The one line that says how to let the app open a device whose group is a
# host group this container cannot map.
device_fix() {
	if [ "$engine" = podman ]; then
		printf 'start it with --user %s:%s --group-add keep-groups so that your host groups stay the app'"'"'s (crun)' "$uid" "$gid"
	else
		printf 'run it with --userns=host, or let others open it on the host; DEVICE_GROUPS=no silences this'
	fi
}

# MAP_NODE_UID's node ($node, owned by $o_uid:$o_gid, mode $o_mode) under a
# user namespace: data the app cannot write and nothing here can fix would
# only fail later as "Permission denied", so the start stops now instead.
stuck_check() {
	[ "$ns_host" != 0 ] || return 0
	! can_write "$uid" "$gid" "$o_uid" "$o_gid" "$o_mode" "$node" 1 || return 0
	if [ "$o_uid" = "$over_uid" ]; then
		stuck="$node belongs to a host user this container cannot map (it shows as uid $o_uid)"
	elif [ "$o_uid" = 0 ] && [ "$ns_count" = 1 ]; then
		stuck="$node belongs to you on the host (root in this rootless container is host uid $ns_host), so $user ($uid, host uid $(host_uid "$uid")) cannot write it"
	else
		return 0
	fi
	die "$stuck; $(userns_fix); or MAP_NODE_UID=no if the app only reads it"
}

# A device node ($1) of group $2 the app is never given: root's, or a host
# group this container cannot map.
device_warning() {
	if [ "$2" = 0 ]; then
		warn "$1 belongs to group root (0), which the app is never given; give the device a group of its own on the host (chgrp), or DEVICE_GROUPS=no to silence this"
	else
		warn "$1 belongs to a host group this container cannot map (it shows as gid $2); $(device_fix)"
	fi
}

# A mount ($4, owned by $1:$2, mode $3) the app may not write: one line
# naming the fixes that apply. Never stops the app, which may just read it.
mount_warning() {
	! can_write "$uid" "$gid" "$1" "$2" "$3" "$4" "$by_name" || return 0
	if [ "$1" = "$over_uid" ]; then
		fixes="it belongs to a host user this container cannot map: $(userns_fix)"
	elif [ "$1" = 0 ] && [ "$ns_count" = 1 ]; then
		fixes="it is yours on the host: $(userns_fix), or USER_ID=0 ALLOW_ROOT_ID=1 (root here is you on the host); for a volume, CHOWN_PATHS=$4 gives it to $user"
	else
		fixes="CHOWN_PATHS=$4 gives it to $user"
		[ "$1" = 0 ] || fixes="$fixes; MAP_NODE_UID=$4 runs as its owner $1"
		fixes="$fixes; USER_ID=0 ALLOW_ROOT_ID=1 keeps a one-off admin job (a backup) root, which --user 0 does not"
	fi
	warn "$4 is mounted read-write but $user ($uid:$gid) cannot write it (owner $1:$2, mode $3). Fix: $fixes. MOUNT_CHECK=no silences this"
}

# One line: what the account could not be given, and the start that needs no
# change to the account files.
not_done() {
	todo='' adds=''
	[ "$need_ids" = 0 ] || todo="be given uid $uid"
	[ -z "$kept" ] || todo="${todo:+$todo, nor }keep the groups$kept it was given"
	[ -z "$devices" ] || todo="${todo:+$todo, nor }join the device groups$devices"
	for g in $joins; do adds="$adds --group-add $g"; done
	msg="$user could not $todo: $why. Start it with --user $uid:$gid$adds instead, which needs no change here"
	[ "$need_ids" = 0 ] || msg="$msg. Running as $uid:$gid with HOME=$home"
	warn "$msg"
}
