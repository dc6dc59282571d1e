#!/usr/bin/env bash
# Builds the project's image from its own Dockerfile with buildah (rootful, vfs
# storage, no daemon) and imports it into the test node's containerd.
#
# Usage: tests/env/image.sh DIR     DIR: a control plane started with --with-node
#        tests/env/image.sh --build-only
# Prints the image reference as its last line (for the chart's image.repository/tag).
#
# No registry can be reached here, so the two base images the Dockerfile names
# are built locally first, under exactly those names, and the build runs with
# --pull=never:
#   rust:1.95-bookworm    Debian bookworm (mmdebstrap from Debian's mirror, minbase
#                         + gcc, libc6-dev, make, pkg-config, ca-certificates) with
#                         this machine's Rust 1.95 toolchain (rustc, cargo, std)
#                         copied to /usr/local/rustup, CARGO_HOME=/usr/local/cargo;
#   gcr.io/distroless/cc-debian12:nonroot
#                         the same bookworm packages distroless cc is made of
#                         (libc6, libgcc-s1, the CA bundle) copied out of that tree,
#                         /etc/passwd and /etc/group with root and nonroot (65532),
#                         /home/nonroot, /tmp; no shell, no package manager.
# What that changes: the toolchain and libc are this machine's and Debian's
# current bookworm, not the tags' exact bits; tzdata, libssl and libstdc++ of
# distroless are left out (the binary links none of them). What it does not
# change: the Dockerfile, its stages, user, entrypoint and files are the ones a
# Docker user builds.
#
# Caches (outside the source tree, keyed by what they are built from):
#   $CACHE/images/bookworm-build.tar   the mmdebstrap tree (apt downloads once)
#   buildah's storage                  both base images, the build's layers
#   buildah cache mounts               the Dockerfile's cargo registry and target
#                                      (RUN --mount=type=cache), so a warm build
#                                      recompiles the crate only
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

CACHE_ROOT="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
IMG_CACHE="$CACHE_ROOT/images"
RUST_IMAGE="docker.io/library/rust:1.95-bookworm"
RUNTIME_IMAGE="gcr.io/distroless/cc-debian12:nonroot"
IMAGE="localhost/scim-operator:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)-dev"
B=(buildah --storage-driver vfs)

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

target=${1:-}
[[ -n $target ]] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
((EUID == 0)) || die "rootful buildah: run as root"
for p in buildah mmdebstrap; do
  command -v "$p" >/dev/null || {
    log "installing $p (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" uidmap >&2 ||
      die "apt-get install $p failed"
  }
done
mkdir -p "$IMG_CACHE"
exec 9>"$IMG_CACHE/.lock"
flock 9

have_image() { "${B[@]}" inspect --type image "$1" >/dev/null 2>&1; }
toolchain=$(rustc +1.95 --print sysroot 2>/dev/null || rustc --print sysroot)
[[ $("$toolchain/bin/rustc" --version) == "rustc 1.95."* ]] ||
  die "the Dockerfile builds with Rust 1.95; this machine's toolchain is $("$toolchain/bin/rustc" --version)"

# ------------------------------------------------------- the Debian tree
tree="$IMG_CACHE/bookworm-build.tar"
if [[ ! -s $tree ]]; then
  t0=$(now)
  log "mmdebstrap bookworm (minbase + build tools) from Debian's mirror ..."
  mmdebstrap --variant=minbase --include=gcc,libc6-dev,make,pkg-config,ca-certificates \
    bookworm "${tree%.tar}.tmp.tar" http://deb.debian.org/debian >&2 || die "mmdebstrap failed"
  mv -f "${tree%.tar}.tmp.tar" "$tree"
  log "Debian tree in $(($(now) - t0))s"
fi

# ------------------------------------------------------- rust:1.95-bookworm
if ! have_image "$RUST_IMAGE"; then
  t0=$(now)
  log "building $RUST_IMAGE from the Debian tree and $toolchain ..."
  c=$("${B[@]}" from scratch)
  "${B[@]}" add "$c" "$tree" / >/dev/null
  mnt=$("${B[@]}" mount "$c")
  dest="$mnt/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu"
  mkdir -p "$dest" "$mnt/usr/local/cargo/bin"
  cp -a "$toolchain/bin" "$toolchain/lib" "$toolchain/libexec" "$dest/" 2>/dev/null ||
    cp -a "$toolchain/bin" "$toolchain/lib" "$dest/"
  for b in cargo rustc rustdoc; do
    ln -s "../../rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/$b" "$mnt/usr/local/cargo/bin/$b"
  done
  "${B[@]}" umount "$c" >/dev/null
  "${B[@]}" config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RUST_VERSION=1.95.0 --cmd '["bash"]' "$c"
  "${B[@]}" commit -q "$c" "$RUST_IMAGE" >/dev/null
  "${B[@]}" rm "$c" >/dev/null
  log "$RUST_IMAGE in $(($(now) - t0))s"
fi

# ------------------------------------- gcr.io/distroless/cc-debian12:nonroot
if ! have_image "$RUNTIME_IMAGE"; then
  t0=$(now)
  log "building $RUNTIME_IMAGE (libc6, libgcc-s1, CA bundle, nonroot) ..."
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/tree" "$work/rootfs"
  tar -C "$work/tree" -xf "$tree"
  rf="$work/rootfs"
  # bookworm's merged /usr: /lib, /lib64, /bin and /sbin are symlinks into /usr.
  for l in lib lib64 bin sbin; do
    mkdir -p "$rf/usr/$l"
    [[ -L $work/tree/$l ]] && cp -a "$work/tree/$l" "$rf/$l"
  done
  # The files of the packages distroless cc ships that this binary can use.
  for pkg in libc6 libgcc-s1; do
    dpkg-query --admindir="$work/tree/var/lib/dpkg" -L "$pkg" |
      grep -v -e '^/usr/share/doc' -e '^/usr/share/lintian' -e '^/usr/share/man' -e '^/usr/share/locale' |
      while read -r f; do
        [[ -e $work/tree$f || -L $work/tree$f ]] || continue
        if [[ -d $work/tree$f ]]; then mkdir -p "$rf$f"; else
          mkdir -p "$rf$(dirname "$f")"
          cp -a "$work/tree$f" "$rf$f"
        fi
      done
  done
  mkdir -p "$rf/etc/ssl/certs" "$rf/home/nonroot" "$rf/tmp" "$rf/root"
  cp -L "$work/tree/etc/ssl/certs/ca-certificates.crt" "$rf/etc/ssl/certs/"
  chmod 1777 "$rf/tmp"
  chown 65532:65532 "$rf/home/nonroot"
  chmod 700 "$rf/root"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rf/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rf/etc/group"
  cp "$work/tree/etc/nsswitch.conf" "$rf/etc/" 2>/dev/null || true
  [[ ! -e $rf/bin/sh && ! -e $rf/usr/bin/sh ]] || die "the runtime tree has a shell"
  c=$("${B[@]}" from scratch)
  tar -C "$rf" -cf "$work/rootfs.tar" .
  "${B[@]}" add "$c" "$work/rootfs.tar" / >/dev/null
  "${B[@]}" config --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$c"
  "${B[@]}" commit -q "$c" "$RUNTIME_IMAGE" >/dev/null
  "${B[@]}" rm "$c" >/dev/null
  rm -rf "$work"
  trap - EXIT
  log "$RUNTIME_IMAGE in $(($(now) - t0))s"
fi

# ------------------------------------------------------- the project image
t0=$(now)
log "buildah bud -f Dockerfile -t $IMAGE ..."
# Host network for the build stage only (cargo fetches crates from crates.io, as
# on the host), and the host's CA bundle over the image's, so a TLS-intercepting
# proxy the host trusts is trusted by cargo too; neither ends up in a layer.
ca_args=()
[[ -s /etc/ssl/certs/ca-certificates.crt ]] &&
  ca_args=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
# vfs copies every layer whole (about 1 GB for the build stage): the working
# containers an interrupted build left and the untagged images each build leaves
# (earlier builds of this tag, intermediate layers) are removed, so repeated runs
# do not fill the disk. The expensive cache, cargo's, lives in cache mounts.
"${B[@]}" rm --all >/dev/null 2>&1 || true
nice "${B[@]}" bud --pull=never --layers --network host "${ca_args[@]}" -f Dockerfile -t "$IMAGE" . >&2 ||
  die "buildah bud failed"
"${B[@]}" rmi --prune >/dev/null 2>&1 || true
log "image built in $(($(now) - t0))s; storage: $(du -sh /var/lib/containers/storage 2>/dev/null | cut -f1)"

# The image runs without a shell and as the numeric user.
user=$("${B[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
[[ $user == 65532:65532 ]] || die "image user is '$user', wanted 65532:65532"

if [[ $target != --build-only ]]; then
  # shellcheck disable=SC1091
  . "$target/env"
  [[ -n ${CONTAINERD_ADDRESS:-} ]] || die "$target was not started with --with-node"
  t0=$(now)
  archive="$IMG_CACHE/scim-operator.tar"
  rm -f "$archive"
  "${B[@]}" push -q "$IMAGE" "docker-archive:$archive:$IMAGE" >&2
  ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images import "$archive" >&2 ||
    die "ctr images import failed"
  rm -f "$archive"
  log "imported into the node's containerd in $(($(now) - t0))s"
fi
cd "$root"
printf '%s\n' "$IMAGE"
