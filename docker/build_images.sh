#!/usr/bin/env bash
# `make images`: builds the f2llm images from docker/*.Dockerfile, checks each one from its own
# filesystem (docker/check_image.sh: `f2llm serve --help` in the serve image, `f2llm --help` in
# the others, as the image's non-root user) and writes sizes and build times, with machine info,
# to build/images.json.
#
#   IMAGES="data serve"  which images (the default); add `train` for the CUDA training image
#   REGISTRY, TAG        ghcr.io/f2llm, 0.1.0 (helm/f2llm/values.yaml image.registry, image.tag)
#   BASE_IMAGE           base of data/serve, docker.io/library/python:3.11-slim. When it cannot be
#                        pulled: Debian bookworm (python3 3.11 + python3-venv) from debootstrap,
#                        imported as localhost/f2llm-base:bookworm (needs root; made once)
#   TRAIN_BASE           base of train, docker.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04.
#                        When it cannot be pulled, the Dockerfile is checked on Ubuntu 24.04 from
#                        debootstrap (localhost/f2llm-base:noble, with the image's `ubuntu` user,
#                        uid 1000) with PyPI's torch, as localhost/f2llm-train-check:TAG: the
#                        Dockerfile's logic, not the CUDA image (several GB)
#   TORCH_INDEX          index of torch==2.13.0 for data/serve, https://download.pytorch.org/whl/cpu.
#                        When that host cannot be reached: a local torch-2.13.0+cpu wheel from
#                        pip's find-links (PIP_FIND_LINKS, `pip config`) or TORCH_WHEEL_DIR,
#                        bind-mounted into the build, and everything else from PyPI
#   BUILD_CA_BUNDLE      a CA bundle the build must trust (default: PIP_CERT), for machines whose
#                        TLS goes through an intercepting proxy: bind-mounted over the image's
#                        /etc/ssl/certs/ca-certificates.crt for RUN steps only (podman)
#   ENGINE               podman (preferred) or docker. podman builds with --isolation chroot: no
#                        container runtime is needed, nor can containers start here
#   NO_CACHE=1           build every layer afresh (data and serve share their layers otherwise:
#                        the second one builds in seconds)
#   STORAGE_DRIVER       containers/storage's own variable (overlay, vfs) if the default fails
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGES=${IMAGES:-data serve}
REGISTRY=${REGISTRY:-ghcr.io/f2llm}
TAG=${TAG:-0.1.0}
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.11-slim}
TRAIN_BASE=${TRAIN_BASE:-docker.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
UBUNTU_MIRROR=${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
OUT=${OUT:-build/images.json}

if [[ -z ${ENGINE:-} ]]; then
    if command -v podman >/dev/null; then ENGINE=podman
    elif command -v docker >/dev/null; then ENGINE=docker
    else echo "build_images: neither podman nor docker is installed (apt-get install podman)" >&2; exit 1; fi
fi
export ENGINE

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { echo "build_images: $*" >&2; exit 1; }
have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
pullable() { have_image "$1" || "$ENGINE" pull -q "$1" >/dev/null 2>&1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

BUILD_FLAGS=(--network host)
# chroot isolation runs RUN steps without an OCI runtime (crun cannot start containers here)
[[ $ENGINE == podman ]] && BUILD_FLAGS+=(--isolation chroot)
[[ -n ${NO_CACHE:-} ]] && BUILD_FLAGS+=(--no-cache)
BUILD_CA_BUNDLE=${BUILD_CA_BUNDLE:-${PIP_CERT:-}}
if [[ $ENGINE == podman && -n $BUILD_CA_BUNDLE && -f $BUILD_CA_BUNDLE ]]; then
    BUILD_FLAGS+=(-v "$BUILD_CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
fi

# --- base images from debootstrap -------------------------------------------------------------
# debootstrap_image TAG SUITE MIRROR [debootstrap options...]: a minbase system with what the
# options --include, imported with LANG and PATH set, without apt caches, docs, man pages or
# locales (dpkg keeps them out of later installs too, as in Debian's and Ubuntu's slim images).
debootstrap_image() {
    local tag=$1 suite=$2 mirror=$3 root
    shift 3
    [[ $(id -u) == 0 ]] || die "debootstrap needs root (or a pullable BASE_IMAGE / TRAIN_BASE)"
    command -v debootstrap >/dev/null || die "apt-get install debootstrap"
    root=$work/rootfs-$suite
    log "debootstrap --variant=minbase $* $suite -> $tag"
    debootstrap --variant=minbase "$@" "$suite" "$root" "$mirror" ${DEBOOTSTRAP_SCRIPT:-} >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    cat >"$root/etc/dpkg/dpkg.cfg.d/slim-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log
    find "$root/usr/share/doc" -mindepth 1 -type f -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    # the host's DNS settings and name stay out of the image
    : >"$root/etc/resolv.conf"
    echo localhost >"$root/etc/hostname"
    if [[ -n ${BASE_SETUP:-} ]]; then chroot "$root" sh -c "$BASE_SETUP"; fi
    tar --numeric-owner -C "$root" -c . | "$ENGINE" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase $* $suite" - "$tag" >/dev/null
    rm -rf "$root"
}

cpu_base() {  # base of data/serve
    if pullable "$BASE_IMAGE"; then echo "$BASE_IMAGE"; return; fi
    local tag=localhost/f2llm-base:bookworm
    log "cannot pull $BASE_IMAGE: Debian bookworm from debootstrap ($tag)"
    have_image "$tag" || debootstrap_image "$tag" bookworm "$DEBIAN_MIRROR" \
        --include=python3,python3-venv,ca-certificates,netbase
    echo "$tag"
}

noble_base() {  # Ubuntu 24.04 as ubuntu:24.04 is: user ubuntu, uid 1000 (the train image's base)
    local tag=localhost/f2llm-base:noble
    if ! have_image "$tag"; then
        # bookworm's debootstrap has no noble script (gutsy's serves every later Ubuntu) and
        # Debian has no Ubuntu keyring: unverified, for this local check image only
        BASE_SETUP="useradd --uid 1000 --create-home --shell /bin/bash ubuntu && rm -f /etc/apt/sources.list
            printf '%s\n' 'Types: deb' 'URIs: $UBUNTU_MIRROR' 'Suites: noble noble-updates noble-security' \
                'Components: main restricted universe multiverse' \
                'Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg' >/etc/apt/sources.list.d/ubuntu.sources" \
            DEBOOTSTRAP_SCRIPT=/usr/share/debootstrap/scripts/gutsy \
            debootstrap_image "$tag" noble "$UBUNTU_MIRROR" --no-check-gpg --include=ca-certificates
    fi
    echo "$tag"
}

# --- torch==2.13.0, CPU -------------------------------------------------------------------
torch_source=
cpu_torch_args() {
    if [[ -n ${TORCH_INDEX:-} ]]; then
        torch_source="index $TORCH_INDEX"; TORCH_ARGS=(--build-arg "TORCH_INDEX=$TORCH_INDEX"); return
    fi
    if curl -fsS -o /dev/null --max-time 15 "$TORCH_CPU_INDEX/torch/" 2>/dev/null; then
        torch_source="index $TORCH_CPU_INDEX"; TORCH_ARGS=(); return
    fi
    local dirs=${TORCH_WHEEL_DIR:-${PIP_FIND_LINKS:-}} d wheel=
    [[ -n $dirs ]] || dirs=$(python3 -m pip config get global.find-links 2>/dev/null || true)
    for d in $dirs; do
        d=${d#file://}
        wheel=$(compgen -G "$d/torch-2.13.0+cpu-*.whl" | head -1 || true)
        [[ -z $wheel ]] || break
    done
    [[ -n $wheel ]] || die "$TORCH_CPU_INDEX cannot be reached and no torch-2.13.0+cpu wheel was found" \
        "(TORCH_WHEEL_DIR); PyPI's torch 2.13.0 is the CUDA build (several GB)"
    log "$TORCH_CPU_INDEX cannot be reached: torch from $wheel, the rest from PyPI"
    torch_source="local wheel $(basename "$wheel") + https://pypi.org/simple"
    # /mnt: an empty directory in every base, so the mount point leaves nothing in the image;
    # pip takes 2.13.0+cpu over PyPI's 2.13.0 (a local version sorts higher)
    [[ $ENGINE == podman ]] || die "a local torch wheel needs podman (bind mounts in the build)"
    TORCH_ARGS=(-v "$(dirname "$wheel"):/mnt:ro" --build-arg TORCH_INDEX=https://pypi.org/simple
        --build-arg TORCH_FIND_LINKS=/mnt)
}

# --- build and check ----------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
: >"$work/results.tsv"
for name in $IMAGES; do
    ref=$REGISTRY/f2llm-$name:$TAG
    case $name in
        data | serve)
            [[ -n ${CPU_BASE:-} ]] || CPU_BASE=$(cpu_base)
            [[ -n $torch_source ]] || cpu_torch_args
            base=$CPU_BASE
            args=(--build-arg "BASE=$base" "${TORCH_ARGS[@]}")
            torch=$torch_source ;;
        train)
            if pullable "$TRAIN_BASE"; then
                base=$TRAIN_BASE
                args=(--build-arg "BASE=$base")
                torch="index https://download.pytorch.org/whl/cu128 (the Dockerfile's)"
            else
                log "cannot pull $TRAIN_BASE: checking docker/train.Dockerfile on Ubuntu 24.04 instead"
                base=$(noble_base)
                ref=localhost/f2llm-train-check:$TAG
                args=(--build-arg "BASE=$base" --build-arg TORCH_INDEX=https://pypi.org/simple)
                torch="index https://pypi.org/simple (CUDA build)"
            fi ;;
        *) die "unknown image '$name' (data, serve, train)" ;;
    esac
    log "build $ref (docker/$name.Dockerfile, base $base)"
    start=$(date +%s.%N)
    "$ENGINE" build "${BUILD_FLAGS[@]}" "${args[@]}" -f "docker/$name.Dockerfile" -t "$ref" . 2>&1 |
        tee "$work/build.log"
    seconds=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
    steps=$(grep -c '^STEP ' "$work/build.log" || true)
    cached=$(grep -c -e '--> Using cache' "$work/build.log" || true)
    size=$("$ENGINE" image inspect --format '{{.Size}}' "$ref")
    user=$("$ENGINE" image inspect --format '{{.Config.User}}' "$ref")
    if [[ $name == serve ]]; then docker/check_image.sh "$ref" serve --help; else docker/check_image.sh "$ref" --help; fi
    log "$ref: $(python3 -c "print(round($size / 1e6))") MB, built in $seconds s ($cached/$steps steps cached), USER $user, checked"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$ref" "$base" "$torch" "$size" "$seconds" "$user" \
        "$steps" "$cached" >>"$work/results.tsv"
done

# --- build/images.json ----------------------------------------------------------------------
RESULTS=$work/results.tsv OUT=$OUT python3 - <<'EOF'
import json, os, platform, subprocess, time

def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return None

engine = os.environ["ENGINE"]
machine = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "engine": run(engine, "--version")}
if engine == "podman":
    machine["storage_driver"] = run(engine, "info", "--format", "{{.Store.GraphDriverName}}")
try:
    with open("/proc/meminfo") as f:
        machine["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
except OSError:
    pass
images = []
with open(os.environ["RESULTS"]) as f:
    for line in f.read().splitlines():
        name, ref, base, torch, size, seconds, user, steps, cached = line.split("\t")
        images.append({"name": name, "ref": ref, "base": base, "torch": torch, "size_bytes": int(size),
                       "size_mb": round(int(size) / 1e6, 1), "build_seconds": float(seconds),
                       "steps": int(steps), "steps_cached": int(cached), "user": user, "checked": True})
with open(os.environ["OUT"], "w") as f:
    json.dump({"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine, "images": images}, f, indent=2)
    f.write("\n")
for im in images:
    print(f"{im['ref']:45} {im['size_mb']:9.1f} MB {im['build_seconds']:8.1f} s "
          f"({im['steps_cached']}/{im['steps']} steps cached)  USER {im['user']}")
print(f"-> {os.environ['OUT']}")
EOF
