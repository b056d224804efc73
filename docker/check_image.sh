#!/usr/bin/env bash
# docker/check_image.sh IMAGE [ARG...]: runs the image's entrypoint with ARG... (default:
# `serve --help`) from the image's own filesystem, without a container runtime: the image is
# mounted (`podman image mount`; docker: exported to a temporary directory) and the command
# runs under chroot as the image's user, with the image's environment and working directory.
# Checks that the image runs as a non-root user, that the command exits 0 and that its output
# names what it should (EXPECT, space-separated; for `serve --help`: --model and --port).
set -euo pipefail

ref=${1:?usage: docker/check_image.sh IMAGE [ARG...]}
shift
(($#)) || set -- serve --help
if [[ -z ${EXPECT+x} ]]; then
    case "$*" in
        "serve --help") EXPECT="--model --port" ;;
        "--help") EXPECT="serve run compile" ;;
        *) EXPECT= ;;
    esac
fi

if [[ -z ${ENGINE:-} ]]; then
    if command -v podman >/dev/null; then ENGINE=podman; else ENGINE=docker; fi
fi
# rootless podman mounts images only inside its user namespace
if [[ $ENGINE == podman && $(id -u) != 0 && -z ${_F2LLM_UNSHARED:-} ]]; then
    exec podman unshare env _F2LLM_UNSHARED=1 ENGINE=podman EXPECT="$EXPECT" "$0" "$ref" "$@"
fi

fail() { echo "check_image: $ref: $*" >&2; exit 1; }

config=$("$ENGINE" image inspect --format '{{json .Config}}' "$ref") || fail "no such image"
user=$("$ENGINE" image inspect --format '{{.Config.User}}' "$ref")
workdir=$("$ENGINE" image inspect --format '{{.Config.WorkingDir}}' "$ref")
workdir=${workdir:-/}
mapfile -t envs < <(python3 -c 'import json, sys; print(*(json.loads(sys.argv[1]).get("Env") or []), sep="\n")' "$config")
mapfile -t entry < <(python3 -c 'import json, sys; print(*(json.loads(sys.argv[1]).get("Entrypoint") or []), sep="\n")' "$config")

# the user: set, and not root
uid=${user%%:*}
[[ -n $user ]] || fail "runs as root (no USER)"

mnt= cid= tmp= mounted=()
cleanup() {
    local m
    for m in "${mounted[@]}"; do umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    if [[ -n $cid ]]; then "$ENGINE" rm "$cid" >/dev/null 2>&1 || true; fi
    if [[ -n $tmp ]]; then rm -rf "$tmp"; fi
    if [[ $ENGINE == podman && -n $mnt ]]; then podman image unmount "$ref" >/dev/null || true; fi
}
trap cleanup EXIT

if [[ $ENGINE == podman ]]; then
    mnt=$(podman image mount "$ref")
else
    tmp=$(mktemp -d) cid=$("$ENGINE" create "$ref")
    "$ENGINE" export "$cid" | tar -x -C "$tmp"
    mnt=$tmp
fi
[[ -d $mnt/etc ]] || fail "mounted at '$mnt', but that holds no filesystem"

# numeric uid/gid from the image's /etc/passwd
if [[ $uid =~ ^[0-9]+$ ]]; then
    pw=$(awk -F: -v u="$uid" '$3 == u' "$mnt/etc/passwd")
else
    pw=$(awk -F: -v u="$uid" '$1 == u' "$mnt/etc/passwd")
fi
[[ -n $pw ]] || fail "user '$user' is not in the image's /etc/passwd"
IFS=: read -r uname _ nuid ngid _ <<<"$pw"
gid=${user#*:}
[[ $gid == "$user" ]] && gid=$ngid
[[ $nuid != 0 ]] || fail "runs as root (USER $user)"
echo "check_image: $ref runs as USER $user ($uname, uid $nuid, gid $gid)"

# a container has /proc, /dev and a writable /tmp; the mounted image gets them for the command
# (podman's image mount is read-only)
mount_in() {  # mount_in DIR MOUNT-ARGS...
    local dir=$mnt/$1
    shift
    if [[ -d $dir ]] && mount "$@" "$dir" 2>/dev/null; then mounted=("$dir" "${mounted[@]}"); fi
}
mount_in proc -t proc proc
mount_in dev --rbind /dev
mount_in tmp -t tmpfs tmpfs

((${#entry[@]})) || fail "has no ENTRYPOINT"
echo "check_image: chroot $mnt (with ${mounted[*]#"$mnt"}), as $nuid:$gid in $workdir: ${entry[*]} $*"
set +e
out=$(chroot --userspec="$nuid:$gid" --groups="$gid" "$mnt" /usr/bin/env -i --chdir="$workdir" \
    "${envs[@]}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "${entry[@]}" "$@" 2>&1)
rc=$?
set -e
printf '%s\n' "$out" | sed 's/^/  | /'
((rc == 0)) || fail "'${entry[*]} $*' exited $rc"
for word in $EXPECT; do
    grep -q -e "$word" <<<"$out" || fail "'${entry[*]} $*' does not mention $word"
done
echo "check_image: $ref OK: '${entry[*]} $*' exited 0${EXPECT:+ and mentions $EXPECT}"
