# shellcheck shell=sh disable=SC2034,SC2153,SC2154 # shares the variables of the entrypoint, which sources it
# A start as a uid without an account (--user, runAsUser, OpenShift's
# arbitrary uid with gid 0), sourced by /usr/local/bin/entrypoint only then.

# A passwd for nss_wrapper at $1, created anew (noclobber: O_EXCL, so no
# link planted there is followed): /etc/passwd with $user given our ids.
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
	done <"$root/etc/passwd" >"$1"
}

# Can we write directory $1? busybox's test -w reads the mode bits alone, so
# under a read-only root (--read-only, readOnlyRootFilesystem: the root's is
# the mount table's first line) the table is read: the last, longest mount
# point that holds $1 decides. A rw root costs one line, not the table.
writable() {
	[ -w "$root$1" ] || return 1
	read -r _ _ _ _ mp opts _ <"$root/proc/self/mountinfo"
	case $mp,$opts, in /,ro,* | /,*,ro,*) ;; /,*) return 0 ;; esac
	best='' ro=0
	while read -r _ _ _ _ mp opts _; do
		case $mp in *\\*) mp=$(printf '%b' "$mp") ;; esac
		case $1/ in "${mp%/}/"*)
			[ "${#mp}" -ge "${#best}" ] || continue
			best=$mp ro=0
			case ,$opts, in *,ro,*) ro=1 ;; esac
			;;
		esac
	done <"$root/proc/self/mountinfo"
	[ "$ro" = 0 ]
}

# Such a uid would get HOME=/ and no name: give it the image user's home,
# which gid 0 may write, or $TMPDIR (else /tmp) when that home is not writable
# (a read-only root: the writable /tmp such a pod mounts is then the one
# place), and where the image has nss_wrapper (glibc only) a passwd of its own
# in which the image user has this uid. Setuid programs ignore LD_PRELOAD, so
# that passwd names ids for the app and grants nothing.
# An account the engine wrote for the uid keeps its name; its HOME (the
# workdir, under podman) moves to $TMPDIR alike when it cannot be written.
as_given() {
	tmp=${TMPDIR:-/tmp}
	if [ -n "$my_name" ]; then
		writable "${HOME:-/}" || ! writable "$tmp" || export HOME="$tmp"
		step_down "$@"
	fi
	if [ "${HOME:-/}" = / ]; then
		HOME=$home
		writable "$home" || ! writable "$tmp" || HOME=$tmp
		export HOME
	fi
	nss=/usr/local/lib/base-gosu/libnss_wrapper.so
	[ -e "$root$nss" ] && [ -z "${NSS_WRAPPER_PASSWD:-}" ] || step_down "$@"
	for d in "$tmp" "$HOME"; do
		if nss_passwd "$root$d/.base-gosu-passwd.$my_uid.$$"; then
			export LD_PRELOAD="$nss${LD_PRELOAD:+ $LD_PRELOAD}" NSS_WRAPPER_PASSWD="$d/.base-gosu-passwd.$my_uid.$$" \
				NSS_WRAPPER_GROUP=/etc/group
			step_down "$@"
		fi
	done
	warn "uid $my_uid has no account and neither $tmp nor $HOME is writable, so it stays nameless (whoami fails); mount a writable /tmp (an emptyDir)"
	step_down "$@"
}
