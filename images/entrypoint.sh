#!/bin/sh
# Start as root, make the unprivileged user match the data it will touch, then
# `exec gosu` so the app is PID 1 and receives signals directly. What it reads
# is in the README's variables table, each runtime mode in docs/images.md.
#
# This file decides. From /usr/local/lib/base-gosu/ it sources, only when
# needed: entrypoint-changes.sh (account files with their rollback,
# CHOWN_PATHS, device groups) on a start that changes something,
# entrypoint-diagnostics.sh (advice) when there is something to explain,
# entrypoint-arbitrary-uid.sh on a start as a uid without an account. A start
# with nothing to change reads none of them and forks twice at most (one
# stat, the chown of stdio).
#
# ENTRYPOINT_ROOT (default empty: /) prefixes every path it reads or writes
# and ENTRYPOINT_DRY_RUN=1 prints the chown and exec commands instead of
# running them, so unit tests run it against a root of their own. POSIX sh.
set -eu

root=${ENTRYPOINT_ROOT:-}
die() { printf 'entrypoint: error: %s\n' "$*" >&2; exit 2; }
warn() { printf 'entrypoint: warning: %s\n' "$*" >&2; }
note() { printf 'entrypoint: %s\n' "$*" >&2; }
act() {
	if [ -n "${ENTRYPOINT_DRY_RUN:-}" ]; then printf '%s\n' "$*"; else "$@"; fi
}
step_down() {
	[ -z "${ENTRYPOINT_DRY_RUN:-}" ] ||
		{ printf 'HOME=%s\nNSS_WRAPPER_PASSWD=%s\nexec %s\n' "${HOME-}" "${NSS_WRAPPER_PASSWD-}" "$*" && exit 0; }
	exec "$@"
}
use() {
	case " ${used:-} " in *" $1 "*) return 0 ;; esac
	used="${used:-} $1"
	# shellcheck source=/dev/null # linted on its own
	. "$root/usr/local/lib/base-gosu/entrypoint-$1.sh"
}

[ "$#" -gt 0 ] || die "no command given; pass one, e.g. docker run IMAGE sh"

# One read of our own status gives the ids, groups and effective capabilities
# (the last of them), no fork.
my_uid='' my_gid='' my_groups='' cap_eff=''
# shellcheck disable=SC2034 # my_gid: read by entrypoint-arbitrary-uid.sh
while read -r key v1 v2; do
	case $key in
	Uid:) my_uid=$v1 ;;
	Gid:) my_gid=$v1 ;;
	Groups:) my_groups="$v1 $v2" ;;
	CapEff:) cap_eff=$v1 && break ;;
	esac
done <"$root/proc/self/status"

user=${GOSU_USER:-ops}
nl='
'
cwd=${PWD#"$root"}

# The account as the image built it, and whether our own uid has one.
cur_uid='' cur_gid='' home='' my_name='' my_home=''
while IFS=: read -r name _ p_uid p_gid _ p_home _; do
	if [ "$name" = "$user" ]; then
		cur_uid=$p_uid cur_gid=$p_gid home=$p_home
	fi
	if [ "$p_uid" = "$my_uid" ] && [ -z "$my_name" ]; then
		my_name=$name my_home=$p_home
	fi
done <"$root/etc/passwd"

# Started with --user (or runAsUser): nothing is remapped. A uid without an
# account may need a HOME and a name, one with gid 0 and an account the
# engine wrote (podman's: its home the workdir) a HOME.
if [ "$my_uid" != 0 ]; then
	case $my_name,$my_gid in
	,*) [ -n "$home" ] || step_down "$@" ;;
	*,0) [ "$my_uid" != "$cur_uid" ] && [ "${HOME:-/}" = "$my_home" ] || step_down "$@" ;;
	*) step_down "$@" ;;
	esac
	use arbitrary-uid
	as_given "$@"
fi

[ -n "$cur_uid" ] || die "user '$user' is not in /etc/passwd; set GOSU_USER to the account to run as"

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

case ${MOUNT_CHECK:-yes} in
yes | no) ;;
*) die "MOUNT_CHECK='$MOUNT_CHECK' is neither yes nor no; MOUNT_CHECK=no silences the mount check" ;;
esac
case ${DEVICE_GROUPS:-yes} in
yes | no) ;;
*) die "DEVICE_GROUPS='$DEVICE_GROUPS' is neither yes nor no; DEVICE_GROUPS=no keeps the app out of device groups" ;;
esac

# Read-write bind mounts and volumes, one per line. The engine's own mounts
# (/proc, /sys, /dev, /etc/hosts and friends), read-only mounts and fresh
# tmpfs mounts (podman's --read-only /run and /tmp) are not the user's data.
rw_mounts='' all_mounts='' idmapped='' dev_mounts='' root_ro=0
while read -r _ _ _ m_root mp m_opts m_rest; do
	case $mp in *\\*) mp=$(printf '%b' "$mp") ;; esac
	all_mounts=$all_mounts$nl$mp
	# shellcheck disable=SC2034 # read by entrypoint-changes.sh
	case $mp,$m_opts, in /,ro,*) root_ro=1 ;; esac
	case $mp in
	/ | /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /etc/hosts | /etc/hostname | /etc/resolv.conf | \
		/run/.containerenv | /run/secrets | /run/secrets/*) continue ;;
	esac
	# A device node bound outside /dev (dockerd --userns-remap keeps --device's host path) is no data.
	if [ -c "$root$mp" ] || [ -b "$root$mp" ]; then
		dev_mounts=$dev_mounts$nl$mp
		continue
	fi
	m_rest=" $m_rest"
	m_rest=${m_rest#* - }
	case ,$m_opts,${m_rest##* }, in *,ro,*) continue ;; esac
	# An idmapped mount already shows the app ids of its own: nothing to fix.
	case ,$m_opts, in *,idmapped,*)
		idmapped=$idmapped$nl$mp
		continue
		;;
	esac
	[ "${m_rest%% *}:$m_root" != tmpfs:/ ] || continue
	rw_mounts=$rw_mounts$nl$mp
done <"$root/proc/self/mountinfo"
# One stat for a newline-separated list of paths in the container (a function
# has its own "$@", the app's stays intact).
stat_lines() {
	rest=$1
	set --
	while [ -n "$rest" ]; do
		rest=${rest#"$nl"}
		mp=${rest%%"$nl"*}
		[ "$mp" = "$rest" ] && rest='' || rest=${rest#"$mp"}
		set -- "$@" "$root$mp"
	done
	exec stat -L -c '%u %g %a %n' -- "$@"
}
rw_mount() { case $rw_mounts$nl in *"$nl$1$nl"*) return 0 ;; esac; return 1; }
member_of() {
	while IFS=: read -r _ _ g_id g_members; do
		if [ "$g_id" = "$1" ]; then
			case ,$g_members, in *,"$user",*) return 0 ;; esac
		fi
	done <"$root/etc/group"
	return 1
}

read -r over_uid <"$root/proc/sys/kernel/overflowuid" || over_uid=65534
read -r over_gid <"$root/proc/sys/kernel/overflowgid" || over_gid=65534

# The ids MAP_NODE_UID's node gives: its owner, unless that is root or the
# overflow uid (under userns remapping or a rootless engine, files of unmapped
# host users show it: adopting it would mean "nobody"). The same fork stats
# the mounts the mount check reads.
map_node() {
	[ -e "$root$node" ] || die "MAP_NODE_UID='$node' does not exist; point it at a mounted path or set MAP_NODE_UID=no"
	m_stats=$(stat_lines "$node$rw_mounts" 2>/dev/null) || m_stats=$(stat_lines "$node")
	# shellcheck disable=SC2034 # o_mode: read by entrypoint-diagnostics.sh
	read -r o_uid o_gid o_mode _ <<EOF
$m_stats
EOF
	case $m_stats in *"$nl"*) m_stats=${m_stats#*"$nl"} ;; *) m_stats='' ;; esac
	if { [ "$o_uid" = "$over_uid" ] || [ "$o_uid" = 0 ]; } && rw_mount "$node"; then
		use diagnostics
		stuck_check
	fi
	if [ "$o_uid" = "$over_uid" ]; then
		warn "$node is owned by the overflow uid $o_uid (a host user this container cannot map); keeping $user at $cur_uid:$cur_gid"
	elif [ "$o_uid" != 0 ]; then
		uid=$o_uid
		[ "$o_gid" = 0 ] || [ "$o_gid" = "$over_gid" ] || gid=$o_gid
	fi
}

# --- decide the target ids, validating everything before changing anything ---
uid=$cur_uid gid=$cur_gid m_stats=''
if [ "$cur_uid" = 0 ]; then
	# A root account is run as it is: remapping it would rename root.
	[ "${ALLOW_ROOT_ID:-}" = 1 ] ||
		die "GOSU_USER='$user' has uid 0, so the app would run as root; set ALLOW_ROOT_ID=1 if you really mean it, or name an unprivileged account (the image's is ops)"
	for v in "USER_ID:${USER_ID-}" "GROUP_ID:${GROUP_ID-}"; do
		case $v in
		*:) ;;
		USER_ID:0 | GROUP_ID:"$cur_gid") ;;
		*) die "${v%%:*}='${v#*:}' cannot remap GOSU_USER='$user' (uid 0); drop it, or name an unprivileged account" ;;
		esac
	done
elif [ -n "${USER_ID+set}" ]; then
	check_id USER_ID "$USER_ID"
	uid=$USER_ID gid=${GROUP_ID-$USER_ID}
	[ -z "${GROUP_ID+set}" ] || check_id GROUP_ID "$GROUP_ID"
elif [ -n "${GROUP_ID+set}" ]; then
	check_id GROUP_ID "$GROUP_ID"
	gid=$GROUP_ID
else
	node=${MAP_NODE_UID-$cwd}
	[ "$node" = no ] || map_node
fi

chown_paths=''
[ -z "${CHOWN_PATHS:-}" ] || { use changes && check_chown_paths; }

# gosu needs CAP_SETUID and CAP_SETGID (bits 7 and 6); without them its error
# is a bare "operation not permitted".
if [ $((0x${cap_eff:-0} & 0xc0)) != $((0xc0)) ]; then
	die "this container lacks the SETUID/SETGID capabilities (--cap-drop ALL?), so it cannot step down from root to $user. Add them back with --cap-add SETUID --cap-add SETGID, or start as the user directly with --user $uid:$gid"
fi

is_in() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }

# gosu gives the app the groups /etc/group lists the account in, and drops
# every other: the groups the engine added to root's own (--group-add,
# Kubernetes supplementalGroups and fsGroup) must be listed to survive.
# Root's own are gid 0 and those that list root, as the engine computed them
# (/etc/group is read only when root has a group besides 0).
root_own=0
case " $my_groups " in *" "[1-9]*)
	while IFS=: read -r _ _ g_id g_members; do
		case ,$g_members, in *,root,*) root_own="$root_own $g_id" ;; esac
	done <"$root/etc/group"
	;;
esac
# shellcheck disable=SC2034 # kept, devices, dev_notes: entrypoint-changes.sh and -diagnostics.sh
joins='' kept='' devices='' dev_notes=''
for g in $my_groups; do
	is_in "$g" "$root_own $gid $over_gid $joins" || joins="$joins $g" kept="$kept $g"
done

# Device nodes beyond the engine's standard set (null, zero, ..., pts/, shm/,
# mqueue/, fd/) into $nodes. /dev's own entries are read first: when they are
# the standard set, as almost always, nothing below them can be such a node.
extra_nodes() {
	nodes=$dev_mounts
	for f in "$root"/dev/*; do
		case ${f#"$root"} in
		/dev/null | /dev/zero | /dev/full | /dev/random | /dev/urandom | /dev/tty | /dev/console | /dev/ptmx | \
			/dev/pts | /dev/shm | /dev/mqueue | /dev/fd | /dev/stdin | /dev/stdout | /dev/stderr | /dev/core | \
			*'*') f='' ;;
		*) break ;;
		esac
	done
	[ -n "$f" ] || return 0
	for f in "$root"/dev/* "$root"/dev/*/* "$root"/dev/*/*/* "$root"/dev/*/*/*/*; do
		case ${f#"$root"} in
		/dev/null | /dev/zero | /dev/full | /dev/random | /dev/urandom | /dev/tty | /dev/console | /dev/ptmx | \
			/dev/pts/* | /dev/shm/* | /dev/mqueue/* | /dev/fd/* | *'*') continue ;;
		esac
		if [ ! -L "$f" ] && { [ -c "$f" ] || [ -b "$f" ]; }; then
			nodes=$nodes$nl${f#"$root"}
		fi
	done
}
# Under --privileged (every capability) the container has every host device:
# none is handed out.
if [ "${DEVICE_GROUPS:-yes}" = yes ] && [ "$uid" != 0 ] && [ "$cur_uid" != 0 ] &&
	[ $((0x${cap_eff:-0} & 0x3fffffffff)) != $((0x3fffffffff)) ]; then
	extra_nodes
	[ -z "$nodes" ] || { use changes && device_groups; }
fi

# shellcheck disable=SC2034 # by_name: read by entrypoint-diagnostics.sh
need_ids=0 run_as=$user by_name=1 app_env=''
if [ "$cur_uid" = 0 ]; then
	:
elif [ "$uid" = 0 ]; then
	# ALLOW_ROOT_ID=1 and USER_ID=0: the account stays, ids are used directly.
	run_as=0:$gid
else
	[ "$uid:$gid" = "$cur_uid:$cur_gid" ] || need_ids=1
	[ "$need_ids" = 0 ] && [ -z "$joins" ] || { use changes && change_account; }
fi
[ -z "$chown_paths" ] || chown_listed

# Mounts the app may not be able to write: one its uid owns with rwx is
# fine, any other a suspect the diagnostics judge. What a remap or CHOWN_PATHS
# may have changed since the first stat is read again.
if [ "${MOUNT_CHECK:-yes}" = yes ] && [ "$uid" != 0 ] && [ -n "$rw_mounts" ]; then
	if [ -z "$m_stats" ] || [ "$need_ids" = 1 ] || [ -n "$chown_paths" ]; then
		m_stats=$(stat_lines "$rw_mounts" 2>/dev/null) || :
	fi
	while read -r s_uid s_gid s_mode s_name; do
		[ -n "$s_name" ] || continue
		[ "$s_uid" != "$uid" ] || [ $(((0$s_mode >> 6) & 3)) != 3 ] || continue
		use diagnostics
		mount_warning "$s_uid" "$s_gid" "$s_mode" "${s_name#"$root"}"
	done <<EOF
$m_stats
EOF
fi

# The container's stdio are pipes or a pty owned by root; give them to the
# target user so /dev/stdout, /dev/stderr and $(tty) stay writable. /dev/null
# and files are left alone.
fds=''
for fd in 0 1 2; do
	if [ -p "$root/proc/$$/fd/$fd" ] || [ -t "$fd" ]; then
		fds="$fds $root/proc/$$/fd/$fd"
	fi
done
if [ -n "$fds" ]; then
	# Inside $( ): busybox ash applies a builtin-level redirection such as
	# 2>/dev/null in the parent around vfork, which would make /proc/$$/fd/2
	# point at /dev/null while chown runs.
	# Not through act: a function would cost the subshell a fork of its own.
	# shellcheck disable=SC2086 # word splitting of the fd list is intended
	if [ -n "${ENTRYPOINT_DRY_RUN:-}" ]; then
		echo chown "$uid:$gid" $fds
	else
		err=$(chown "$uid:$gid" $fds 2>&1) || warn "cannot hand stdio to $uid:$gid, so /dev/stdout may not open: $err"
	fi
fi

[ -z "$app_env" ] || set -- env "$app_env" "$@"
step_down gosu "$run_as" "$@"
