#!/usr/bin/env bash
# Test-only: builds the stand-in base images scripts/compose-check.sh needs where no image
# registry is reachable. Each carries the exact tag the shipped Dockerfile and
# docker-compose.yml name (rust:…, node:…, debian:…, redis:…, postgres:…) and is built from
# Debian packages on a debootstrapped minimal Debian, plus the host's CA bundle so that
# cargo and npm inside `docker build` reach their registries as the host does. Only missing
# images are built, so a second run costs nothing. Every stand-in is labelled
# org.iptrack.stand-in=<what it really holds>; `docker image ls --filter
# label=org.iptrack.stand-in` lists them, and the check prints them.
#
# An image already present, or one the registry gives (`docker pull`), is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."

here=tests/compose/stand-ins
base=iptrack-ci/bookworm-minbase:1
mirror=${IPTRACK_CI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { printf '== stand-ins: %s\n' "$*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }
# Present, or pulled: where the registry answers, the real image is used, not a stand-in.
# (Here it fails at once: no DNS for registry-1.docker.io.)
present() {
  have "$1" && return 0
  if timeout 600 docker pull -q "$1" >/dev/null 2>&1; then
    log "pulled the real $1"
    return 0
  fi
  return 1
}
# The classic builder is enough here (no cache mounts), and needs no BuildKit frontend.
build() { # build TAG DOCKERFILE CONTEXT [ARGS...]
  local tag=$1 file=$2 context=$3; shift 3
  present "$tag" && return 0
  log "building $tag from $file"
  DOCKER_BUILDKIT=0 nice -n 10 docker build -q -t "$tag" -f "$file" "$@" "$context" >/dev/null
}

if ! have "$base"; then
  command -v debootstrap >/dev/null || { echo "compose-stand-ins: debootstrap is needed" >&2; exit 1; }
  root=$(mktemp -d /var/tmp/iptrack-minbase.XXXXXX)
  # debootstrap mounts /proc and /sys inside the root while it works: unmount before
  # removing anything, should it stop half-way.
  trap 'umount -R "$root/proc" "$root/sys" 2>/dev/null; rm -rf --one-file-system "$root"' EXIT
  log "debootstrapping bookworm (minbase) from $mirror"
  nice -n 10 debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  # The same mirror for apt inside the images; no caches or lists in the layer.
  echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
  # As in any chroot: package scripts must not start daemons while an image is built.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" --one-file-system -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$base" >/dev/null
  rm -rf --one-file-system "$root"
  trap - EXIT
fi

# The host's CA bundle: TLS from this machine to the registries goes through a certificate
# chain only it trusts. Installed as a local certificate so that update-ca-certificates
# (run whenever a stage installs ca-certificates) keeps it in the bundle.
ctx=$(mktemp -d /var/tmp/iptrack-stand-ins.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca-bundle.crt"
cp "$here"/*.sh "$ctx/"

build debian:bookworm-slim "$here/debian.Dockerfile" "$ctx" --build-arg "BASE=$base"

# The rest only need debian:bookworm-slim and mostly wait on downloads: side by side.
pids=()
build node:22-bookworm-slim "$here/node.Dockerfile" "$ctx" & pids+=($!)
build redis:7-alpine "$here/redis.Dockerfile" "$ctx" & pids+=($!)
build postgres:17-alpine "$here/postgres.Dockerfile" "$ctx" & pids+=($!)
# The `nginx` profile's images (forward-auth in front of a small Python app), under the
# tags docker-compose.yml names, when it names them.
for image in $(grep -oE '^ +image: (nginx|python):[^ ]+' docker-compose.yml | awk '{print $2}' | sort -u); do
  build "$image" "$here/${image%%:*}.Dockerfile" "$ctx" & pids+=($!)
done
if ! present rust:1.94-slim-bookworm; then
  # The machine's own toolchain (offline: no rustup download). bin and lib only; the
  # documentation is not needed to build. A context of its own: the classic builder
  # sends the whole context with every build.
  sysroot=$(rustc --print sysroot)
  mkdir -p "$ctx/rust/toolchain"
  cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/rust/toolchain/"
  [ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$ctx/rust/toolchain/"
  build rust:1.94-slim-bookworm "$here/rust.Dockerfile" "$ctx/rust" \
    --build-arg "RUST_VERSION=$(rustc --version | cut -d' ' -f2)" & pids+=($!)
fi
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { echo "compose-stand-ins: a stand-in image failed to build" >&2; exit 1; }
