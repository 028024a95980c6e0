#!/bin/sh
# Start as root, make the unprivileged user match the data it will touch, then
# `exec gosu` so the app is PID 1 and receives signals directly.
#
#   USER_ID / GROUP_ID  run as these ids (GROUP_ID defaults to USER_ID)
#   MAP_NODE_UID        else adopt the owner of this path (default: the working
#                       directory; "no" disables) when that owner is not root
#   ALLOW_ROOT_ID=1     permit uid or gid 0, or a GOSU_USER whose uid is 0
#   CHOWN_PATHS         colon-separated paths to chown recursively (only when
#                       some owner differs; system paths and idmapped mounts
#                       are not touched)
#   MOUNT_CHECK=no      silence the warning about mounts the app cannot write
#   DEVICE_GROUPS=no    do not let the app join the groups of devices it was
#                       given (--device) but could not open
#   GOSU_USER           the account to run as (the image sets ops)
#
# Runtime modes:
# - Groups the engine adds beyond root's own (--group-add, Kubernetes
#   supplementalGroups and fsGroup) stay the app's: the account joins them in
#   /etc/group (a gid without a group gets one named group-add-<gid>).
# - A device node beyond the engine's standard set that the app could not
#   open for what its group may do: the account joins the node's group (one
#   line each; device-<gid> when unnamed). Never group 0 (root), never an
#   unmapped host group, never under --privileged (every host device).
# - --read-only: the account files cannot change; one line says what could not
#   be done and how to start instead.
# - Started as another uid (--user, runAsUser, OpenShift's arbitrary uid with
#   gid 0): nothing is remapped. A uid without an account gets the image
#   user's home as HOME (/app and the home are group 0 with the owner's
#   permissions, so gid 0 can write them) and, where the image has
#   nss_wrapper (Debian, Ubuntu), a name: the image user's, as a remap gives.
#
# POSIX sh: runs unchanged under dash, bash and busybox ash. The common path
# forks three times at most (stat of the workdir, one stat of every mount the
# app might not write, chown of stdio), whatever any volume holds.
set -eu

die() {
	printf 'entrypoint: error: %s\n' "$*" >&2
	exit 2
}
warn() { printf 'entrypoint: warning: %s\n' "$*" >&2; }
note() { printf 'entrypoint: %s\n' "$*" >&2; }

[ "$#" -gt 0 ] || die "no command given; pass one, e.g. docker run IMAGE sh"

# One read of our own status gives the ids, groups and effective capabilities, no fork.
my_uid='' my_gid='' my_groups='' cap_eff=''
while read -r key v1 v2; do
	case $key in
	Uid:) my_uid=$v1 ;;
	Gid:) my_gid=$v1 ;;
	Groups:) my_groups="$v1 $v2" ;;
	CapEff:) cap_eff=$v1 ;;
	esac
done </proc/self/status

user=${GOSU_USER:-ops}
nl='
'

# The account as the image built it, and whether our own uid has one.
cur_uid='' cur_gid='' home='' my_name=''
while IFS=: read -r name _ p_uid p_gid _ p_home _; do
	if [ "$name" = "$user" ]; then
		cur_uid=$p_uid cur_gid=$p_gid home=$p_home
	fi
	if [ "$p_uid" = "$my_uid" ] && [ -z "$my_name" ]; then
		my_name=$name
	fi
done </etc/passwd

# A passwd for nss_wrapper at $1, created anew (noclobber: O_EXCL, so no
# link planted there is followed): /etc/passwd with $user given our ids.
# Shell only, no fork: this runs on every start of such a container.
nss_passwd() {
	set -C
	# printf, not the special builtin ":", whose failed redirection would end the shell.
	{ printf "" >"$1"; } 2>/dev/null || { set +C; return 1; }
	set +C
	while IFS= read -r line; do
		case $line in
		"$user":*)
			f=${line#*:}
			pass=${f%%:*}
			f=${f#*:}
			f=${f#*:}
			f=${f#*:}
			printf '%s:%s:%s:%s:%s\n' "$user" "$pass" "$my_uid" "$my_gid" "$f"
			;;
		*) printf '%s\n' "$line" ;;
		esac
	done </etc/passwd >"$1"
}

# Started with --user (or runAsUser): nothing is remapped, and nothing here
# could change the account files. A uid with no account (OpenShift's arbitrary
# uid, gid 0) would get HOME=/ and no name: give it the image user's home,
# which gid 0 may write, and where the image has nss_wrapper (glibc only) a
# passwd of its own in which the image user has this uid. Setuid programs
# ignore LD_PRELOAD, so that passwd names ids for the app and grants nothing.
if [ "$my_uid" != 0 ]; then
	if [ -z "$my_name" ] && [ -n "$home" ]; then
		[ "${HOME:-/}" != / ] || export HOME="$home"
		nss=/usr/local/lib/base-gosu/libnss_wrapper.so
		if [ -e "$nss" ] && [ -z "${NSS_WRAPPER_PASSWD:-}" ]; then
			pw=''
			for d in "${TMPDIR:-/tmp}" "$HOME"; do
				if nss_passwd "$d/.base-gosu-passwd.$my_uid.$$"; then
					pw=$d/.base-gosu-passwd.$my_uid.$$
					break
				fi
			done
			if [ -n "$pw" ]; then
				export LD_PRELOAD="$nss${LD_PRELOAD:+ $LD_PRELOAD}" NSS_WRAPPER_PASSWD="$pw" NSS_WRAPPER_GROUP=/etc/group
			else
				warn "uid $my_uid has no account and neither ${TMPDIR:-/tmp} nor $HOME is writable, so it stays nameless (whoami fails); mount a writable /tmp (an emptyDir)"
			fi
		fi
	fi
	exec "$@"
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
	case $mp,$m_opts, in /,ro,*) root_ro=1 ;; esac
	case $mp in
	/ | /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /etc/hosts | /etc/hostname | /etc/resolv.conf | \
		/run/.containerenv | /run/secrets | /run/secrets/*) continue ;;
	esac
	# A device node bound outside /dev (dockerd --userns-remap keeps --device's host path) is no data.
	if [ -c "$mp" ] || [ -b "$mp" ]; then
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
done </proc/self/mountinfo
# One stat for a newline-separated list of paths (a function has its own "$@",
# the app's stays intact).
stat_lines() {
	rest=$1
	set --
	while [ -n "$rest" ]; do
		rest=${rest#"$nl"}
		mp=${rest%%"$nl"*}
		[ "$mp" = "$rest" ] && rest='' || rest=${rest#"$mp"}
		set -- "$@" "$mp"
	done
	exec stat -L -c '%u %g %a %n' -- "$@"
}
rw_mount() { case $rw_mounts$nl in *"$nl$1$nl"*) return 0 ;; esac; return 1; }

read -r over_uid </proc/sys/kernel/overflowuid || over_uid=65534
read -r over_gid </proc/sys/kernel/overflowgid || over_gid=65534

# Where root stands: in a user namespace whose uid 0 is host uid ns_host. A
# one-uid mapping of root is a rootless engine: root here is the invoking host
# user. A range is a remapping daemon (dockerd --userns-remap).
ns_host=0 ns_count=0
while read -r m_in m_out m_count; do
	if [ "$m_in" = 0 ]; then
		ns_host=$m_out ns_count=$m_count
	fi
done </proc/self/uid_map
# Podman marks its containers with both; --read-only hides /run/.containerenv under a fresh tmpfs.
engine=docker
if [ "${container:-}" = podman ] || [ -e /run/.containerenv ]; then
	engine=podman
fi

# The host uid behind container uid $1 (empty when it is unmapped).
host_uid() {
	while read -r m_in m_out m_count; do
		if [ "$1" -ge "$m_in" ] && [ "$1" -lt $((m_in + m_count)) ]; then
			printf '%s' $((m_out + $1 - m_in))
			return
		fi
	done </proc/self/uid_map
}

# Can uid $1 (gid $2) write a node owned by $3:$4 with octal mode $5 (and
# search it, if $6 is a directory)? Owner, group, other: the first class that
# applies decides, as the kernel does. Supplementary groups count when the app
# runs as the named account ($7 = 1).
can_write() {
	bits=2
	[ ! -d "$6" ] || bits=3
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
member_of() {
	while IFS=: read -r _ _ g_id g_members; do
		if [ "$g_id" = "$1" ]; then
			case ,$g_members, in *,"$user",*) return 0 ;; esac
		fi
	done </etc/group
	return 1
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

# --- decide the target ids, validating everything before changing anything ---
uid=$cur_uid gid=$cur_gid
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
	node=${MAP_NODE_UID-$PWD}
	if [ "$node" != no ]; then
		[ -e "$node" ] || die "MAP_NODE_UID='$node' does not exist; point it at a mounted path or set MAP_NODE_UID=no"
		owner=$(stat -L -c '%u:%g:%a' "$node")
		o_uid=${owner%%:*} o_mode=${owner##*:} o_gid=${owner#*:}
		o_gid=${o_gid%:*}
		# Under a user namespace, data the app cannot write and nothing here can
		# fix would only fail later as "Permission denied": stop now instead.
		stuck=''
		if [ "$ns_host" != 0 ] && rw_mount "$node" &&
			! can_write "$uid" "$gid" "$o_uid" "$o_gid" "$o_mode" "$node" 1; then
			if [ "$o_uid" = "$over_uid" ]; then
				stuck="$node belongs to a host user this container cannot map (it shows as uid $o_uid)"
			elif [ "$o_uid" = 0 ] && [ "$ns_count" = 1 ]; then
				stuck="$node belongs to you on the host (root in this rootless container is host uid $ns_host), so $user ($uid, host uid $(host_uid "$uid")) cannot write it"
			fi
		fi
		[ -z "$stuck" ] || die "$stuck; $(userns_fix); or MAP_NODE_UID=no if the app only reads it"
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

# Paths whose recursive chown would hand the system to the app user. A path
# is judged by where it really leads (symlinks and .. resolved).
system_path() {
	case $1 in
	/ | /home | /root | /run | /var | /tmp) return 0 ;;
	/bin | /bin/* | /boot | /boot/* | /dev | /dev/* | /etc | /etc/* | /lib | /lib/* | /lib32 | /lib32/* | \
		/lib64 | /lib64/* | /libx32 | /libx32/* | /proc | /proc/* | /sbin | /sbin/* | /sys | /sys/* | \
		/usr | /usr/*) return 0 ;;
	esac
	return 1
}

# Is $1 an idmapped mount or under one? (i_mp: that mount)
on_idmapped() {
	i_rest=$idmapped
	while [ -n "$i_rest" ]; do
		i_rest=${i_rest#"$nl"}
		i_mp=${i_rest%%"$nl"*}
		[ "$i_mp" = "$i_rest" ] && i_rest='' || i_rest=${i_rest#"$i_mp"}
		case $1 in "$i_mp" | "${i_mp%/}"/*) return 0 ;; esac
	done
	return 1
}

chown_paths=''
rest=${CHOWN_PATHS:-}
while [ -n "$rest" ]; do
	p=${rest%%:*}
	[ "$p" = "$rest" ] && rest='' || rest=${rest#*:}
	[ -n "$p" ] || continue
	[ -e "$p" ] || [ -L "$p" ] || die "CHOWN_PATHS entry '$p' does not exist"
	real=$(realpath "$p" 2>/dev/null) || real=$p
	# busybox keeps a leading //, which POSIX lets mean something else.
	while :; do
		case $real in
		*//*) real=${real%%//*}/${real#*//} ;;
		?*/) real=${real%/} ;;
		*) break ;;
		esac
	done
	if system_path "$real"; then
		shown="'$p'"
		[ "$real" = "$p" ] || shown="$shown (that is, $real)"
		die "CHOWN_PATHS entry $shown is a system path (/, /bin, /boot, /dev, /etc, /lib*, /proc, /sbin, /sys, /usr and what is under them; /home, /root, /run, /tmp, /var themselves); list your data's own directory instead"
	fi
	if on_idmapped "$real"; then
		note "CHOWN_PATHS entry '$p' is on an idmapped mount ($i_mp), which already shows the app its own ownership; left as it is"
		continue
	fi
	chown_paths=$chown_paths$nl$p
done

# gosu needs CAP_SETUID and CAP_SETGID (bits 7 and 6); without them its error
# is a bare "operation not permitted".
if [ $((0x${cap_eff:-0} & 0xc0)) != $((0xc0)) ]; then
	die "this container lacks the SETUID/SETGID capabilities (--cap-drop ALL?), so it cannot step down from root to $user. Add them back with --cap-add SETUID --cap-add SETGID, or start as the user directly with --user $uid:$gid"
fi

# --- the groups the account joins ---

# The group that carries gid $1, whatever its name (Debian's nobody has
# nogroup); g_name is empty when no group has that gid.
group_of_gid() {
	g_name=''
	while IFS=: read -r g _ g_id _; do
		if [ "$g_id" = "$1" ]; then
			g_name=$g
			return
		fi
	done </etc/group
}
is_in() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }

# gosu gives the app the groups /etc/group lists the account in, and drops
# every other: the groups the engine added to root's own (--group-add,
# Kubernetes supplementalGroups and fsGroup) must be listed to survive.
# Root's own are gid 0 and those that list root, as the engine computed them.
root_own=0
while IFS=: read -r _ _ g_id g_members; do
	case ,$g_members, in *,root,*) root_own="$root_own $g_id" ;; esac
done </etc/group
joins='' kept='' devices='' dev_notes=''
for g in $my_groups; do
	is_in "$g" "$root_own $gid $over_gid $joins" || joins="$joins $g" kept="$kept $g"
done

# Device nodes the container was given beyond the engine's standard set, that
# the app could open only through the node's group (crw-rw---- root:render).
# Globs, not find: no fork unless such a node exists. Under --privileged (every
# capability) the container has every host device: none is handed out.
privileged=0
[ $((0x${cap_eff:-0} & 0x3fffffffff)) != $((0x3fffffffff)) ] || privileged=1
if [ "${DEVICE_GROUPS:-yes}" = yes ] && [ "$privileged" = 0 ] && [ "$uid" != 0 ] && [ "$cur_uid" != 0 ]; then
	nodes=$dev_mounts
	for f in /dev/* /dev/*/* /dev/*/*/* /dev/*/*/*/*; do
		case $f in
		/dev/null | /dev/zero | /dev/full | /dev/random | /dev/urandom | /dev/tty | /dev/console | /dev/ptmx | \
			/dev/pts/* | /dev/shm/* | /dev/mqueue/* | /dev/fd/* | *'*') continue ;;
		esac
		if [ ! -L "$f" ] && { [ -c "$f" ] || [ -b "$f" ]; }; then
			nodes=$nodes$nl$f
		fi
	done
	if [ -n "$nodes" ]; then
		stats=$(stat_lines "$nodes" 2>/dev/null) || :
		while read -r s_uid s_gid s_mode s_name; do
			[ -n "$s_name" ] && [ "$s_uid" != "$uid" ] || continue
			# Only when the group may do something that other may not.
			[ $(((0$s_mode >> 3) & 6 & ~(0$s_mode & 6))) != 0 ] || continue
			! is_in "$s_gid" "$gid $joins" || continue
			! member_of "$s_gid" || continue
			if [ "$s_gid" = 0 ]; then
				warn "$s_name belongs to group root (0), which the app is never given; give the device a group of its own on the host (chgrp), or DEVICE_GROUPS=no to silence this"
			elif [ "$s_gid" = "$over_gid" ]; then
				warn "$s_name belongs to a host group this container cannot map (it shows as gid $s_gid); $(device_fix)"
			else
				group_of_gid "$s_gid"
				joins="$joins $s_gid" devices="$devices $s_gid"
				dev_notes="$dev_notes$nl$s_name (group ${g_name:-device-$s_gid}, gid $s_gid): $user joins it to open the device; DEVICE_GROUPS=no turns this off"
			fi
		done <<EOF
$stats
EOF
	fi
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

# Stage /etc/passwd with $user's ids replaced as /etc/passwd.base-gosu-new; on
# failure `why` says what went wrong.
stage_passwd() {
	if ! err=$({ rewrite /etc/passwd "$user" "$uid" "$gid" >/etc/passwd.base-gosu-new &&
		chmod 0644 /etc/passwd.base-gosu-new; } 2>&1); then
		rm -f /etc/passwd.base-gosu-new
		why="cannot write /etc/passwd.base-gosu-new: ${err:-/etc/passwd has no entry $user}"
		return 1
	fi
}

# Stage /etc/group as /etc/group.base-gosu-new: group $1 (if any) moves to
# gid $gid, $user is listed in every group of $joins, and a gid no group has
# gets group-add-<gid> (from the engine) or device-<gid> (from a device node).
# Returns 4, staging nothing, when the file would not change (a restart).
stage_group() {
	rc=0
	err=$(awk -F: -v OFS=: -v regid="$1" -v gid="$gid" -v user="$user" -v joins="$joins" -v devs=" $devices " '
		BEGIN { n = split(joins, j, " "); for (i = 1; i <= n; i++) want[j[i]] = 1 }
		$1 == regid && $3 != gid { $3 = gid; changed = 1 }
		($3 in want) && !($3 in seen) {
			seen[$3] = 1
			if (index("," $4 ",", "," user ",") == 0) { $4 = ($4 == "" ? user : $4 "," user); changed = 1 }
		}
		{ print }
		END {
			for (i = 1; i <= n; i++) if (!(j[i] in seen)) {
				seen[j[i]] = 1
				print (index(devs, " " j[i] " ") ? "device-" : "group-add-") j[i], "x", j[i], user
				changed = 1
			}
			exit changed ? 0 : 4
		}' /etc/group 2>&1 >/etc/group.base-gosu-new) || rc=$?
	if [ "$rc" = 0 ] && chmod 0644 /etc/group.base-gosu-new; then
		return 0
	fi
	rm -f /etc/group.base-gosu-new
	[ "$rc" != 4 ] || return 4
	why="cannot write /etc/group.base-gosu-new: ${err:-awk failed}"
	return 1
}

# Applies what this start needs; on failure `why` says what stopped it and
# nothing has changed.
apply() {
	why=''
	if [ "$root_ro" = 1 ]; then
		why="the root filesystem is read-only (--read-only)"
		return 1
	fi
	# A gid some group already has (alpine's users=100, root=0) is used as is:
	# no second group with that gid is created.
	regid=''
	if [ "$need_ids" = 1 ]; then
		group_of_gid "$gid"
		[ -n "$g_name" ] || { group_of_gid "$cur_gid" && regid=$g_name; }
	fi
	new_group=1
	stage_group "$regid" || case $? in 4) new_group='' ;; *) return 1 ;; esac
	if [ "$need_ids" = 1 ] && ! stage_passwd; then
		rm -f /etc/group.base-gosu-new
		return 1
	fi
	if [ -n "$new_group" ]; then
		cp -p /etc/group /etc/group.base-gosu-old
		if ! err=$(mv -f /etc/group.base-gosu-new /etc/group 2>&1); then
			rm -f /etc/group.base-gosu-new /etc/passwd.base-gosu-new /etc/group.base-gosu-old
			why="cannot replace /etc/group: $err"
			return 1
		fi
	fi
	if [ "$need_ids" = 1 ] && ! err=$(mv -f /etc/passwd.base-gosu-new /etc/passwd 2>&1); then
		[ -z "$new_group" ] || mv -f /etc/group.base-gosu-old /etc/group
		rm -f /etc/passwd.base-gosu-new
		why="cannot replace /etc/passwd: $err"
		return 1
	fi
	rm -f /etc/group.base-gosu-old
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

need_ids=0 run_as=$user by_name=1
if [ "$cur_uid" = 0 ]; then
	:
elif [ "$uid" = 0 ]; then
	# ALLOW_ROOT_ID=1 and USER_ID=0: the account stays, ids are used directly.
	run_as=0:$gid by_name=0
else
	[ "$uid:$gid" = "$cur_uid:$cur_gid" ] || need_ids=1
	if [ "$need_ids" = 0 ] && [ -z "$joins" ]; then
		:
	elif apply; then
		# Home and workdir the image gave the old ids follow them; -h and find's
		# default never follow a symlink, -xdev never enters a mount. A home that
		# is a system path (alpine's nobody lives in /) is not the account's own.
		if [ "$need_ids" = 1 ] && [ -d "$home" ] && ! system_path "$home"; then
			find "$home" -xdev \( -user "$cur_uid" -o -group "$cur_gid" \) -exec chown -h "$uid:$gid" {} + 2>/dev/null ||
				warn "could not chown $home to $uid:$gid"
		fi
		if [ "$need_ids" = 1 ] && [ "$PWD" != "$home" ] && [ "$(stat -c %u "$PWD")" = "$cur_uid" ]; then
			chown -h "$uid:$gid" "$PWD" 2>/dev/null || warn "could not chown $PWD to $uid:$gid"
		fi
		while read -r line; do
			[ -z "$line" ] || note "$line"
		done <<EOF
$dev_notes
EOF
	else
		not_done
		if [ "$need_ids" = 1 ]; then
			run_as=$uid:$gid by_name=0
			# gosu sets HOME=/ for an id with no passwd entry; env re-sets it and
			# execs in turn, so the app is still PID 1.
			set -- env "HOME=$home" "$@"
		fi
	fi
fi

# Asked-for recursive chown. A first fix (something differs) is one plain
# `chown -R`, as cheap as it gets; a restart with nothing to change costs one
# directory walk and no writes. A path with another mount inside it is walked
# with -xdev and only differing entries are touched, so no mount is entered.
rest=$chown_paths
while [ -n "$rest" ]; do
	rest=${rest#"$nl"}
	p=${rest%%"$nl"*}
	[ "$p" = "$rest" ] && rest='' || rest=${rest#"$p"}
	case $all_mounts$nl in
	*"$nl${p%/}/"?*)
		find "$p" -xdev \( ! -user "$uid" -o ! -group "$gid" \) -exec chown -h "$uid:$gid" {} +
		;;
	*)
		if [ -n "$(find "$p" -xdev \( ! -user "$uid" -o ! -group "$gid" \) -print -quit)" ]; then
			chown -R -h "$uid:$gid" "$p"
		fi
		;;
	esac
done

# Mounts the app will not be able to write: one line each, naming the fixes
# that apply. Read only; never stops the app, which may just read them.
if [ "${MOUNT_CHECK:-yes}" = yes ] && [ "$uid" != 0 ] && [ -n "$rw_mounts" ]; then
	stats=$(stat_lines "$rw_mounts" 2>/dev/null) || :
	while read -r s_uid s_gid s_mode s_name; do
		[ -n "$s_name" ] || continue
		! can_write "$uid" "$gid" "$s_uid" "$s_gid" "$s_mode" "$s_name" "$by_name" || continue
		if [ "$s_uid" = "$over_uid" ]; then
			fixes="it belongs to a host user this container cannot map: $(userns_fix)"
		elif [ "$s_uid" = 0 ] && [ "$ns_count" = 1 ]; then
			fixes="it is yours on the host: $(userns_fix), or USER_ID=0 ALLOW_ROOT_ID=1 (root here is you on the host); for a volume, CHOWN_PATHS=$s_name gives it to $user"
		else
			fixes="CHOWN_PATHS=$s_name gives it to $user"
			[ "$s_uid" = 0 ] || fixes="$fixes; MAP_NODE_UID=$s_name runs as its owner $s_uid"
			fixes="$fixes; USER_ID=0 ALLOW_ROOT_ID=1 keeps a one-off admin job (a backup) root, which --user 0 does not"
		fi
		warn "$s_name is mounted read-write but $user ($uid:$gid) cannot write it (owner $s_uid:$s_gid, mode $s_mode). Fix: $fixes. MOUNT_CHECK=no silences this"
	done <<EOF
$stats
EOF
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
