#!/usr/bin/env bash
# Builds Berth's small workload image without any registry: a rootfs made of
# Debian's statically linked busybox plus a demo "training" script, imported
# with `docker import`. Used by the quickstart demo and the end-to-end tests.
#
#   deploy/images/build-workload-image.sh [TAG]      (default berth/workload:latest)
#
# Needs: docker, and /bin/busybox from the busybox-static package
# (installed here with apt-get when missing and we are root).
set -euo pipefail
tag="${1:-berth/workload:latest}"
here="$(cd "$(dirname "$0")" && pwd)"

busybox=""
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ] && file -L "$b" 2>/dev/null | grep -q 'statically linked'; then busybox="$b"; break; fi
  if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox="$b"; break; fi
done
if [ -z "$busybox" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing busybox-static (a static busybox for the image rootfs)" >&2
    (apt-get install -y -q busybox-static >/dev/null 2>&1) || { apt-get update -q >/dev/null && apt-get install -y -q busybox-static >/dev/null; }
    busybox=/bin/busybox
  else
    echo "error: need a statically linked busybox: sudo apt-get install busybox-static" >&2
    exit 1
  fi
fi

# Idempotent: the inputs' hash is stored as a label, and an image built from
# the same inputs is kept (re-importing would leave a dangling old image).
hash="$(cat "$busybox" "$here/berth-demo-train" "$0" | sha256sum | cut -c1-16)"
if [ "$(docker image inspect -f '{{index .Config.Labels "berth.workload.inputs"}}' "$tag" 2>/dev/null)" = "$hash" ]; then
  echo "$tag is up to date"
  exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/local/bin,etc,tmp,root,proc,sys,dev,workspace}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
install -m 0755 "$here/berth-demo-train" "$root/usr/local/bin/berth-demo-train"

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/sbin' \
  --change 'WORKDIR /workspace' \
  --change 'CMD ["/bin/sh"]' \
  --change "LABEL berth.workload.inputs=$hash" \
  - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
