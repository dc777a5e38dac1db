#!/usr/bin/env bash
# Prepares everything `make e2e` needs on a machine without Docker or a registry (needs root):
#   - Debian's podman, buildah, runc, debootstrap and docker-compose, and for the Helm tests' node containerd,
#     catatonit, iptables and containernetworking-plugins (installed once),
#   - a containers.conf that works in this sandbox (runc, ulimits the sandbox can grant),
#   - localhost/keventing-base:bookworm: a debootstrap'd Debian bookworm with python3 and venv (cached as a
#     tarball, so a wiped podman store re-imports it in seconds),
#   - localhost/keventing-kafka:<version>: Apache Kafka from the jars the embedded launcher caches,
#   - localhost/keventing:e2e: the project's Dockerfile built on that base.
# Idempotent: every step is skipped when its result exists (the keventing image is rebuilt from podman's
# layer cache, so only changed sources cost time). Prints what it does.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}

CACHE=${KEVENTING_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keventing}
E2E=$CACHE/e2e
BASE_IMAGE=${KEVENTING_E2E_BASE_IMAGE:-localhost/keventing-base:bookworm}
KAFKA_VERSION=$("$PY" -c 'from kev.kafka.embedded import kafka_version; print(kafka_version())')
KAFKA_IMAGE=${KEVENTING_KAFKA_IMAGE:-localhost/keventing-kafka}
IMAGE=${KEVENTING_IMAGE:-localhost/keventing:e2e}
export CONTAINERS_CONF=$E2E/containers.conf

say() { printf '[e2e setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step_start=$(date +%s)
took() { local now; now=$(date +%s); say "$1 ($((now - step_start)) s)"; step_start=$now; }

if [ "$(id -u)" != 0 ]; then
  echo "make e2e needs root (podman as root, debootstrap); run it as root" >&2
  exit 1
fi

# podman & co. build and run the images; containerd, catatonit (the pause image), iptables and the CNI plugins
# make the node of tests/e2e/test_helm.py (`kev cluster up --node`).
missing=()
for cmd in podman buildah runc debootstrap docker-compose containerd catatonit iptables; do
  command -v "$cmd" >/dev/null || missing+=("$cmd")
done
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} from Debian…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap docker-compose \
    containerd catatonit iptables containernetworking-plugins >/dev/null
  took "installed"
fi

mkdir -p "$E2E"
cat >"$CONTAINERS_CONF.tmp" <<'CONF'
# Written by deploy/e2e/setup.sh. The sandbox lacks CAP_SYS_RESOURCE (so default ulimits must fit the current
# ones) and crun rejects its cgroup layout (so runc).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"

# ---- base image: Debian bookworm (its python3 is 3.11, like the default python:3.11-slim) ----------------
if ! podman image exists "$BASE_IMAGE"; then
  tarball=$E2E/base-bookworm.tar
  if [ ! -s "$tarball" ]; then
    mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
                  2>/dev/null || true; } | awk '$1 == "URIs:" || $1 == "deb" {print $2}' | grep -v security \
              | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d "$E2E/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    say "debootstrap bookworm (minbase + python3-venv) from $mirror (about 2 min)…"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$mirror" >"$E2E/debootstrap.log" 2>&1 \
      || { tail -20 "$E2E/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
    took "debootstrapped"
  fi
  say "importing $tarball…"
  podman import --quiet "$tarball" localhost/keventing-base-rootfs:bookworm >/dev/null
  # The base trusts what this host trusts (a proxy's CA under /usr/local/share/ca-certificates), and pip,
  # whose own bundle would not, uses the system bundle: builds on it reach PyPI wherever the host does.
  context=$(mktemp -d "$E2E/base-context.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  mkdir "$context/ca"
  cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
  cat >"$context/Containerfile" <<'BASE'
FROM localhost/keventing-base-rootfs:bookworm
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >/etc/pip.conf
BASE
  podman build --quiet --format docker -t "$BASE_IMAGE" "$context" >/dev/null
  rm -rf "$context"
  trap - EXIT
  took "imported $BASE_IMAGE, trusting the host's CA certificates"
fi

# ---- Kafka image from the embedded launcher's jars ---------------------------------------------------------
if ! podman image exists "$KAFKA_IMAGE:$KAFKA_VERSION"; then
  say "resolving the Kafka $KAFKA_VERSION jars (cached in $CACHE/kafka)…"
  libs=$("$PY" -c '
from kev.kafka.embedded import EmbeddedKafka
kafka = EmbeddedKafka(progress=lambda m: print(m, flush=True, file=__import__("sys").stderr))
kafka.ensure_jars()
print(kafka.libs_dir)')
  context=$(mktemp -d "$E2E/kafka-context.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  cp -r deploy/kafka/. "$context/"
  cp -r "$libs" "$context/libs"
  say "building $KAFKA_IMAGE:$KAFKA_VERSION (installs a JRE the first time, about 2 min)…"
  podman build --format docker --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$KAFKA_IMAGE:$KAFKA_VERSION" "$context" \
    2>&1 | tee "$E2E/kafka-build.log" | { grep --line-buffered -E '(^|] )(STEP|COMMIT)|^Error' || true; }

  rm -rf "$context"
  trap - EXIT
  took "built $KAFKA_IMAGE:$KAFKA_VERSION"
fi

# ---- the keventing image ------------------------------------------------------------------------------------
say "building $IMAGE on $BASE_IMAGE…"
podman build --format docker --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" . \
  2>&1 | tee "$E2E/build.log" | { grep --line-buffered -E '(^|] )(STEP|COMMIT)|^Error' || true; }

took "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
