#!/bin/sh
# Start as root, make the unprivileged user match the data it will touch, then
# `exec gosu` so the app is PID 1 and receives signals directly.
#
#   USER_ID / GROUP_ID  run as these ids (GROUP_ID defaults to USER_ID)
#   MAP_NODE_UID        else adopt the owner of this path (default: the working
#                       directory; "no" disables) when that owner is not root
#   ALLOW_ROOT_ID=1     permit uid or gid 0 (refused otherwise)
#   CHOWN_PATHS         colon-separated paths to chown recursively (only entries
#                       whose owner differs; nothing else is ever recursed)
#   GOSU_USER           the account to run as (the image sets ops)
#
# POSIX sh: runs unchanged under dash, bash and busybox ash. The common path
# forks twice (stat, chown), whatever any volume holds.
set -eu

die() {
	printf 'entrypoint: error: %s\n' "$*" >&2
	exit 2
}
warn() { printf 'entrypoint: warning: %s\n' "$*" >&2; }

[ "$#" -gt 0 ] || die "no command given; pass one, e.g. docker run IMAGE sh"

# One read of our own status gives the uid and effective capabilities, no fork.
my_uid='' cap_eff=''
while read -r key v1 _; do
	case $key in
	Uid:) my_uid=$v1 ;;
	CapEff:) cap_eff=$v1 ;;
	esac
done </proc/self/status

# Started with --user: nothing to remap, and nothing we could change anyway.
if [ "$my_uid" != 0 ]; then
	exec "$@"
fi

user=${GOSU_USER:-ops}

# A decimal id in the kernel's range (4294967295 is (uid_t)-1, never valid).
# Leading zeros are refused: the shell would read 010 as octal.
check_id() {
	case $2 in
	'' | *[!0-9]*) die "$1='$2' is not a decimal number; use e.g. $1=1000" ;;
	0?*) die "$1='$2' has a leading zero; write it without one" ;;
	???????????*) die "$1='$2' is out of range (0-4294967294)" ;;
	esac
	[ "$2" -le 4294967294 ] || die "$1='$2' is out of range (0-4294967294)"
	if [ "$2" = 0 ] && [ "${ALLOW_ROOT_ID:-}" != 1 ]; then
		die "$1=0 would run the app as root; set ALLOW_ROOT_ID=1 if you really mean it"
	fi
}

# The account as the image built it.
cur_uid='' cur_gid='' home=''
while IFS=: read -r name _ p_uid p_gid _ p_home _; do
	if [ "$name" = "$user" ]; then
		cur_uid=$p_uid cur_gid=$p_gid home=$p_home
		break
	fi
done </etc/passwd
[ -n "$cur_uid" ] || die "user '$user' is not in /etc/passwd; set GOSU_USER to the account to run as"

# --- decide the target ids, validating everything before changing anything ---
uid=$cur_uid gid=$cur_gid
if [ -n "${USER_ID+set}" ]; then
	check_id USER_ID "$USER_ID"
	uid=$USER_ID gid=${GROUP_ID-$USER_ID}
	[ -z "${GROUP_ID+set}" ] || check_id GROUP_ID "$GROUP_ID"
elif [ -n "${GROUP_ID+set}" ]; then
	check_id GROUP_ID "$GROUP_ID"
	gid=$GROUP_ID
else
	node=${MAP_NODE_UID-$PWD}
	if [ "$node" != no ]; then
		[ -e "$node" ] || die "MAP_NODE_UID='$node' does not exist; point it at a mounted path or set MAP_NODE_UID=no"
		owner=$(stat -L -c '%u:%g' "$node")
		o_uid=${owner%:*} o_gid=${owner#*:}
		read -r over_uid </proc/sys/kernel/overflowuid || over_uid=65534
		read -r over_gid </proc/sys/kernel/overflowgid || over_gid=65534
		if [ "$o_uid" = "$over_uid" ]; then
			# Under userns remapping or a rootless engine, files of unmapped host
			# users show the overflow uid: adopting it would mean "nobody".
			warn "$node is owned by the overflow uid $o_uid (a host user this container cannot map); keeping $user at $cur_uid:$cur_gid"
		elif [ "$o_uid" != 0 ]; then
			uid=$o_uid
			[ "$o_gid" = 0 ] || [ "$o_gid" = "$over_gid" ] || gid=$o_gid
		fi
	fi
fi

chown_paths=${CHOWN_PATHS:-}
if [ -n "$chown_paths" ]; then
	rest=$chown_paths
	while [ -n "$rest" ]; do
		p=${rest%%:*}
		[ "$p" = "$rest" ] && rest='' || rest=${rest#*:}
		[ -z "$p" ] || [ -e "$p" ] || die "CHOWN_PATHS entry '$p' does not exist"
	done
fi

# gosu needs CAP_SETUID and CAP_SETGID (bits 7 and 6); without them its error
# is a bare "operation not permitted".
if [ $((0x${cap_eff:-0} & 0xc0)) != $((0xc0)) ]; then
	die "this container lacks the SETUID/SETGID capabilities (--cap-drop ALL?), so it cannot step down from root to $user. Add them back with --cap-add SETUID --cap-add SETGID, or start as the user directly with --user $uid:$gid"
fi

# --- rewrite /etc/passwd and /etc/group (atomically, rolled back together) ---

# Prints FILE with NAME's id field(s) replaced. In passwd the entry moves in
# front of any other entry already holding the uid, so that lookups by id
# (`id -un`, ls -l) name $user; every other line stays byte-identical.
rewrite() {
	awk -F: -v OFS=: -v name="$2" -v id="$3" -v gid="$4" '
		$1 == name { $3 = id; if (gid != "") $4 = gid; mine = $0; pos = n + 1; next }
		{ line[++n] = $0; ids[n] = $3 }
		END {
			if (mine == "") exit 3
			for (i = 1; i <= n; i++) {
				if (!done && (i == pos || ids[i] == id)) { print mine; done = 1 }
				print line[i]
			}
			if (!done) print mine
		}' "$1"
}

# Stage FILE's new content next to it; fails on a read-only /etc.
stage() {
	t=$(mktemp "$1.base-gosu.XXXXXX" 2>/dev/null) || return 1
	if ! rewrite "$@" >"$t" || ! chmod 0644 "$t"; then
		rm -f "$t"
		return 1
	fi
	printf '%s' "$t"
}

group_has_gid() {
	while IFS=: read -r _ _ g_id _; do
		[ "$g_id" != "$1" ] || return 0
	done </etc/group
	return 1
}

remap() {
	# A gid some group already has (alpine's users=100, root=0) is used as is:
	# no second group with that gid is created.
	new_group=''
	if ! group_has_gid "$gid"; then
		new_group=$(stage /etc/group "$user" "$gid" '') || return 1
	fi
	if ! new_passwd=$(stage /etc/passwd "$user" "$uid" "$gid"); then
		rm -f "$new_group"
		return 1
	fi
	if [ -n "$new_group" ]; then
		cp -p /etc/group "/etc/group.base-gosu-old"
		if ! mv -f "$new_group" /etc/group; then
			rm -f "$new_group" "$new_passwd" /etc/group.base-gosu-old
			return 1
		fi
	fi
	if ! mv -f "$new_passwd" /etc/passwd; then
		[ -z "$new_group" ] || mv -f /etc/group.base-gosu-old /etc/group
		rm -f "$new_passwd"
		return 1
	fi
	rm -f /etc/group.base-gosu-old
}

run_as=$user
if [ "$uid" = 0 ]; then
	# ALLOW_ROOT_ID=1 and USER_ID=0: the account stays, ids are used directly.
	run_as=0:$gid
elif [ "$uid:$gid" != "$cur_uid:$cur_gid" ]; then
	if remap; then
		# Home and workdir the image gave the old ids follow them; -h and find's
		# default never follow a symlink, -xdev never enters a mount.
		if [ -d "$home" ]; then
			find "$home" -xdev \( -user "$cur_uid" -o -group "$cur_gid" \) -exec chown -h "$uid:$gid" {} + 2>/dev/null ||
				warn "could not chown $home to $uid:$gid"
		fi
		if [ "$PWD" != "$home" ] && [ "$(stat -c %u "$PWD")" = "$cur_uid" ]; then
			chown -h "$uid:$gid" "$PWD" 2>/dev/null || warn "could not chown $PWD to $uid:$gid"
		fi
	else
		warn "/etc is read-only, so $user cannot be given uid $uid; running as $uid:$gid with HOME=$home"
		run_as=$uid:$gid
		# gosu sets HOME=/ for an id with no passwd entry; env re-sets it and
		# execs in turn, so the app is still PID 1.
		set -- env "HOME=$home" "$@"
	fi
fi

# Asked-for recursive chown: only entries whose owner differs are touched, so
# a restart with nothing to change costs one directory walk and no writes.
if [ -n "$chown_paths" ]; then
	rest=$chown_paths
	while [ -n "$rest" ]; do
		p=${rest%%:*}
		[ "$p" = "$rest" ] && rest='' || rest=${rest#*:}
		[ -z "$p" ] || find "$p" -xdev \( ! -user "$uid" -o ! -group "$gid" \) -exec chown -h "$uid:$gid" {} +
	done
fi

# The container's stdio are pipes or a pty owned by root; give them to the
# target user so /dev/stdout, /dev/stderr and $(tty) stay writable. /dev/null
# and files are left alone.
fds=''
for fd in 0 1 2; do
	if [ -p "/proc/$$/fd/$fd" ] || [ -t "$fd" ]; then
		fds="$fds /proc/$$/fd/$fd"
	fi
done
if [ -n "$fds" ]; then
	# Inside $( ): busybox ash applies a builtin-level redirection such as
	# 2>/dev/null in the parent around vfork, which would make /proc/$$/fd/2
	# point at /dev/null while chown runs.
	# shellcheck disable=SC2086 # word splitting of the fd list is intended
	err=$(chown "$uid:$gid" $fds 2>&1) || warn "cannot hand stdio to $uid:$gid, so /dev/stdout may not open: $err"
fi

exec gosu "$run_as" "$@"
