#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# A work tree: the recorded base as one commit, the series on top.  The
# kernel's (patches/linux) by default, QEMU's (patches/qemu) with "qemu".
set -euo pipefail
SCRIPT_NAME=tree
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 [qemu] apply|export|status

  apply   Make the work tree the recorded base plus its series applied
          with git am in series order: $TREE_DIR
          ($BASE_PACKAGE $BASE_VERSION) plus patches/linux, or with
          "qemu" $QEMU_TREE_DIR ($QEMU_BASE_PACKAGE $QEMU_BASE_VERSION,
          unpacked by dpkg-source with Debian's patches) plus patches/qemu.
          Does nothing when the tree already holds exactly that series.
          Commits that would be replaced are kept on a backup/* branch;
          uncommitted changes to tracked files stop it.
  export  Write the commits on top of the base to the series directory
          (git format-patch, stable names, no signature), rewrite its
          series file and regenerate its cover letter (harness/cover.sh).
  status  Say whether the work tree and its series agree.

Environment: BUILD_DIR (default $TOP_DIR/build), TREE_DIR, QEMU_TREE_DIR.
USAGE
}

BASE_TAG=base
KIND=linux
if [ "${1:-}" = qemu ]; then
	KIND=qemu
	shift
	TREE_DIR=$QEMU_TREE_DIR
	PATCH_DIR=$QEMU_PATCH_DIR
	BASE_ID=$QEMU_BASE_DSC_SHA256
	BASE_NAME="$QEMU_BASE_PACKAGE $QEMU_BASE_VERSION"
else
	BASE_ID=$BASE_SHA256
	BASE_NAME="$BASE_PACKAGE $BASE_VERSION"
fi
# Fixed identity and dates make the base commit reproducible.
export GIT_AUTHOR_NAME="$KIND base" GIT_AUTHOR_EMAIL="base@localhost"
export GIT_COMMITTER_NAME="$KIND base" GIT_COMMITTER_EMAIL="base@localhost"

git_tree() {
	git -C "$TREE_DIR" "$@"
}

series_patches() {
	[ -f "$PATCH_DIR/series" ] || return 0
	local name
	while read -r name; do
		case "$name" in ''|'#'*) continue ;; esac
		[ -f "$PATCH_DIR/$name" ] || die "$EXIT_BASE" "$PATCH_DIR/series names $name, which does not exist"
		echo "$PATCH_DIR/$name"
	done <"$PATCH_DIR/series"
}

# Ordered patch-ids of the series files and of the tree's commits.
series_patch_ids() {
	local p
	for p in $(series_patches); do
		git patch-id --stable <"$p" | awk '{print $1}'
	done
}

tree_patch_ids() {
	local c
	for c in $(git_tree rev-list --reverse "$BASE_TAG..HEAD"); do
		git_tree show --format=email "$c" | git patch-id --stable | awk '{print $1}'
	done
}

# The tarball's .gitignore ends with Debian's "/*" rule, which would hide new
# files (a new selftest) from git.  Drop the rule in the working copy only and
# tell git not to look at that file: it is never committed or exported.
unhide_linux_new_files() {
	local gi=$TREE_DIR/.gitignore
	if grep -qx '/\*' "$gi"; then
		sed -i -e '/^# Debian packaging: ignore everything/,$d' "$gi"
		sed -i -e '${/^#$/d}' "$gi"
	fi
	git_tree update-index --skip-worktree .gitignore
}

base_is_current() {
	[ -d "$TREE_DIR/.git" ] || return 1
	[ "$(git_tree config --get harness.basesha256 2>/dev/null)" = "$BASE_ID" ] || return 1
	git_tree rev-parse -q --verify "refs/tags/$BASE_TAG" >/dev/null
}

# unpack_base DIR: the base's sources, as the distribution ships them.
unpack_base() {
	local dir=$1
	if [ "$KIND" = qemu ]; then
		log "creating the base work tree from $QEMU_SRC_DIR/$QEMU_BASE_DSC"
		rm -rf "$dir"
		run dpkg-source --no-check -x "$QEMU_SRC_DIR/$QEMU_BASE_DSC" "$dir" >&2 ||
			die "$EXIT_BASE" "dpkg-source -x $QEMU_BASE_DSC failed"
		# quilt's bookkeeping of Debian's patches, already applied
		rm -rf "$dir/.pc"
	else
		log "creating the base work tree from $BASE_TARBALL"
		rm -rf "$dir"
		mkdir -p "$dir"
		run tar -xf "$BASE_TARBALL" -C "$dir" --strip-components=1
	fi
}

make_base() {
	local tmp=$BUILD_DIR/$KIND.unpack
	unpack_base "$tmp"
	run git -C "$tmp" init -q -b series
	git -C "$tmp" config core.autocrlf false
	git -C "$tmp" config gc.auto 0
	run git -C "$tmp" add -A -f
	GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
		run git -C "$tmp" commit -q -m "Base: $BASE_NAME" \
		-m "Unpacked from the package's sources, sha256 $BASE_ID."
	git -C "$tmp" tag "$BASE_TAG"
	git -C "$tmp" config harness.basesha256 "$BASE_ID"
	# Identity for git am / commits made by the developer loop.
	git -C "$tmp" config user.name >/dev/null || git -C "$tmp" config user.name "TSC series developer"
	git -C "$tmp" config user.email >/dev/null || git -C "$tmp" config user.email "dev@localhost"
	rm -rf "$TREE_DIR"
	mv "$tmp" "$TREE_DIR"
	unhide_new_files
}

# Debian's kernel .gitignore hides new files; QEMU's does not.
unhide_new_files() {
	[ "$KIND" = linux ] || return 0
	unhide_linux_new_files
}

tree_is_clean() {
	[ -z "$(git_tree status --porcelain --untracked-files=no)" ]
}

apply_series() {
	local want have p
	want=$(series_patch_ids)
	have=$(tree_patch_ids)
	if [ "$want" = "$have" ]; then
		log "work tree already holds the series ($(echo "$want" | grep -c . || true) patches)"
		return 0
	fi
	tree_is_clean || die "$EXIT_BASE" "$TREE_DIR has uncommitted changes; commit or drop them first"
	if [ "$(git_tree rev-parse HEAD)" != "$(git_tree rev-parse "$BASE_TAG")" ]; then
		local backup
		backup="backup/$(date +%Y%m%d-%H%M%S)"
		git_tree branch -f "$backup" HEAD
		log "work tree differs from $PATCH_DIR; its commits are kept on branch $backup"
	fi
	git_tree reset -q --hard "$BASE_TAG"
	unhide_new_files
	# One git am for the series (one index refresh, not one per patch);
	# on a failure, the commits it made tell which patch failed.
	local patches=() n
	mapfile -t patches < <(series_patches)
	[ "${#patches[@]}" -gt 0 ] || return 0
	if ! git_tree am -q --whitespace=error-all "${patches[@]}" >&2; then
		n=$(git_tree rev-list --count "$BASE_TAG..HEAD")
		git_tree am --abort >/dev/null 2>&1 || true
		die "$EXIT_BASE" "patch $(basename "${patches[$n]:-${patches[-1]}}") does not apply to the base (patches 1-$n apply)"
	fi
	log "applied ${#patches[@]} patches: $(basename "${patches[0]}") .. $(basename "${patches[-1]}")"
}

cmd_apply() {
	local start
	start=$(date +%s)
	ensure_dirs
	if [ "$KIND" = qemu ]; then
		base_is_current || fetch_qemu_source
	else
		base_is_current || fetch_base_tarball
	fi
	base_is_current || make_base
	apply_series
	stage_time apply "$start"
}

cmd_export() {
	[ -d "$TREE_DIR/.git" ] || die "$EXIT_BASE" "no work tree at $TREE_DIR; run '$0 apply' first"
	tree_is_clean || die "$EXIT_BASE" "$TREE_DIR has uncommitted changes; commit them first"
	local untracked
	untracked=$(git_tree status --porcelain | grep '^??' || true)
	[ -z "$untracked" ] || log "warning: untracked files in the work tree are not exported:"$'\n'"$untracked"
	local tmp=$PATCH_DIR.new
	rm -rf "$tmp"
	mkdir -p "$tmp" "$PATCH_DIR"
	git_tree format-patch -q --no-signature --zero-commit --no-numbered \
		--subject-prefix=PATCH -o "$tmp" "$BASE_TAG..HEAD"
	find "$PATCH_DIR" -maxdepth 1 -name '[0-9][0-9][0-9][0-9]-*.patch' \
		! -name '0000-*' -delete
	(cd "$tmp" && ls -1 -- *.patch 2>/dev/null || true) >"$PATCH_DIR/series"
	[ -z "$(ls -A "$tmp")" ] || mv "$tmp"/*.patch "$PATCH_DIR"/
	rmdir "$tmp"
	log "exported $(grep -c . "$PATCH_DIR/series" || true) patches to $PATCH_DIR"
	if [ -x "$HARNESS_DIR/cover.sh" ]; then
		TREE_DIR=$TREE_DIR PATCH_DIR=$PATCH_DIR "$HARNESS_DIR/cover.sh" "$KIND"
	fi
}

cmd_status() {
	[ -d "$TREE_DIR/.git" ] || { echo "no work tree"; return 1; }
	if [ "$(series_patch_ids)" = "$(tree_patch_ids)" ] && tree_is_clean; then
		echo "work tree and $PATCH_DIR agree"
	else
		echo "work tree and $PATCH_DIR differ (export, or apply)"
		return 1
	fi
}

main() {
	case "${1:-}" in
	apply) cmd_apply ;;
	export) cmd_export ;;
	status) cmd_status ;;
	-h|--help) usage ;;
	*) usage >&2; exit "$EXIT_USAGE" ;;
	esac
}

main "$@"
