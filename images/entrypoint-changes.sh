# shellcheck shell=sh disable=SC2034,SC2153,SC2154 # shares the variables of the entrypoint, which sources it
# What a start that changes something runs, sourced by /usr/local/bin/entrypoint
# only then (a restart with nothing to change never reads it): CHOWN_PATHS,
# the device groups, and the rewrite of /etc/passwd and /etc/group with its
# rollback. Every path is under $root, as in the entrypoint.

# Paths whose recursive chown would hand the system to the app user.
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
		case $1 in "$i_mp" | "${i_mp%/}/"*) return 0 ;; esac
	done
	return 1
}

# Where $1 really leads (symlinks and .. resolved), inside the root.
resolved() {
	real=$(realpath "$root$1" 2>/dev/null) || real=$root$1
	real=${real#"$root"}
	real=${real:-/}
	# busybox keeps a leading //, which POSIX lets mean something else.
	while :; do
		case $real in
		*//*) real=${real%%//*}/${real#*//} ;;
		?*/) real=${real%/} ;;
		*) break ;;
		esac
	done
}

# CHOWN_PATHS, refused before anything changes if any entry is missing or a
# system path; entries on an idmapped mount are left out, saying so.
check_chown_paths() {
	rest=$CHOWN_PATHS
	while [ -n "$rest" ]; do
		p=${rest%%:*}
		[ "$p" = "$rest" ] && rest='' || rest=${rest#*:}
		[ -n "$p" ] || continue
		[ -e "$root$p" ] || [ -L "$root$p" ] || die "CHOWN_PATHS entry '$p' does not exist"
		resolved "$p"
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
}

# A first fix (something differs) is one plain `chown -R`, as cheap as it
# gets; a restart with nothing to change costs one directory walk and no
# writes. A path with another mount inside it is walked with -xdev and only
# differing entries are touched, so no mount is entered.
chown_listed() {
	rest=$chown_paths
	while [ -n "$rest" ]; do
		rest=${rest#"$nl"}
		p=${rest%%"$nl"*}
		[ "$p" = "$rest" ] && rest='' || rest=${rest#"$p"}
		case $all_mounts$nl in
		*"$nl${p%/}/"?*)
			act find "$root$p" -xdev \( ! -user "$uid" -o ! -group "$gid" \) -exec chown -h "$uid:$gid" {} +
			;;
		*)
			if [ -n "$(find "$root$p" -xdev \( ! -user "$uid" -o ! -group "$gid" \) -print -quit)" ]; then
				act chown -R -h "$uid:$gid" "$root$p"
			fi
			;;
		esac
	done
}

# The group that carries gid $1, whatever its name (Debian's nobody has
# nogroup); g_name is empty when no group has that gid.
group_of_gid() {
	g_name=''
	while IFS=: read -r g _ g_id _; do
		if [ "$g_id" = "$1" ]; then
			g_name=$g
			return
		fi
	done <"$root/etc/group"
}

# Of the device nodes $nodes, those the app could open only through their
# group (crw-rw---- root:render): the account joins that group. Never group 0
# nor an unmapped host group; the diagnostics say why and what to do.
device_groups() {
	stats=$(stat_lines "$nodes" 2>/dev/null) || :
	while read -r s_uid s_gid s_mode s_name; do
		s_name=${s_name#"$root"}
		[ -n "$s_name" ] && [ "$s_uid" != "$uid" ] || continue
		# Only when the group may do something that other may not.
		[ $(((0$s_mode >> 3) & 6 & ~(0$s_mode & 6))) != 0 ] || continue
		! is_in "$s_gid" "$gid $joins" || continue
		! member_of "$s_gid" || continue
		if [ "$s_gid" = 0 ] || [ "$s_gid" = "$over_gid" ]; then
			use diagnostics
			device_warning "$s_name" "$s_gid"
			continue
		fi
		group_of_gid "$s_gid"
		joins="$joins $s_gid" devices="$devices $s_gid"
		dev_notes="$dev_notes$nl$s_name (group ${g_name:-device-$s_gid}, gid $s_gid): $user joins it to open the device; DEVICE_GROUPS=no turns this off"
	done <<EOF
$stats
EOF
}

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
	if ! err=$({ rewrite "$etc/passwd" "$user" "$uid" "$gid" >"$etc/passwd.base-gosu-new" &&
		chmod 0644 "$etc/passwd.base-gosu-new"; } 2>&1); then
		rm -f "$etc/passwd.base-gosu-new"
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
		}' "$etc/group" 2>&1 >"$etc/group.base-gosu-new") || rc=$?
	if [ "$rc" = 0 ] && chmod 0644 "$etc/group.base-gosu-new"; then
		return 0
	fi
	rm -f "$etc/group.base-gosu-new"
	[ "$rc" != 4 ] || return 4
	why="cannot write /etc/group.base-gosu-new: ${err:-awk failed}"
	return 1
}

# Applies what this start needs; on failure `why` says what stopped it and
# nothing has changed.
apply() {
	why='' etc=$root/etc
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
		rm -f "$etc/group.base-gosu-new"
		return 1
	fi
	if [ -n "$new_group" ]; then
		cp -p "$etc/group" "$etc/group.base-gosu-old"
		if ! err=$(mv -f "$etc/group.base-gosu-new" "$etc/group" 2>&1); then
			rm -f "$etc/group.base-gosu-new" "$etc/passwd.base-gosu-new" "$etc/group.base-gosu-old"
			why="cannot replace /etc/group: $err"
			return 1
		fi
	fi
	if [ "$need_ids" = 1 ] && ! err=$(mv -f "$etc/passwd.base-gosu-new" "$etc/passwd" 2>&1); then
		[ -z "$new_group" ] || mv -f "$etc/group.base-gosu-old" "$etc/group"
		rm -f "$etc/passwd.base-gosu-new"
		why="cannot replace /etc/passwd: $err"
		return 1
	fi
	rm -f "$etc/group.base-gosu-old"
}

# Home and workdir the image gave the old ids follow them; -h and find's
# default never follow a symlink, -xdev never enters a mount. A home that is a
# system path (alpine's nobody lives in /) is not the account's own.
follow_ids() {
	if [ -d "$root$home" ] && ! system_path "$home"; then
		act find "$root$home" -xdev \( -user "$cur_uid" -o -group "$cur_gid" \) -exec chown -h "$uid:$gid" {} + 2>/dev/null ||
			warn "could not chown $home to $uid:$gid"
	fi
	if [ "$cwd" != "$home" ] && [ "$(stat -c %u "$root$cwd")" = "$cur_uid" ]; then
		act chown -h "$uid:$gid" "$root$cwd" 2>/dev/null || warn "could not chown $cwd to $uid:$gid"
	fi
}

# The account files as this start needs them, then what follows the new ids;
# or, when they cannot change, the numeric ids with the image user's HOME
# (gosu sets HOME=/ for an id with no passwd entry; env re-sets it and execs
# in turn, so the app is still PID 1) and one line saying what was not done.
change_account() {
	if apply; then
		[ "$need_ids" = 0 ] || follow_ids
		while read -r line; do
			[ -z "$line" ] || note "$line"
		done <<EOF
$dev_notes
EOF
		return 0
	fi
	use diagnostics
	not_done
	if [ "$need_ids" = 1 ]; then
		run_as=$uid:$gid by_name=0
		app_env="HOME=$home"
	fi
}
