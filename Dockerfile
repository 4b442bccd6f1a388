# syntax=docker/dockerfile:1
#
# spillway in a container: built on Debian bookworm, run on bookworm-slim (the same glibc).
#
#   docker build -t spillway:0.1.0 .
#   docker run --rm -p 8080:8080 -p 9901:9901 \
#       -v "$PWD/proxy.yaml:/etc/spillway/proxy.yaml:ro" -v /srv/uploads:/var/www/uploads \
#       spillway:0.1.0                                     # the proxy
#   docker run ... spillway:0.1.0 offload --watch --config /etc/spillway/proxy.yaml
#
# examples/kubernetes.yaml runs both from this image.

# The locked dependencies need a recent compiler (pingora-lru's parking_lot 0.13 asks for
# Rust 1.95), newer than Cargo.toml's rust-version.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# cmake: Pingora compresses with zlib-ng (libz-ng-sys), which builds with cmake. The image
# already has the C compiler, make, perl and pkg-config that ring, aws-lc-sys, zstd-sys and
# mimalloc need.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `cargo build` reads. The [[bench]] targets in Cargo.toml must exist for Cargo to
# read the manifest, so benches/ comes too. build.rs asks git for the commit hash; without
# .git (see .dockerignore) it records "unknown" (`spillway --version`, spillway_build_info).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# The registry and target directories are BuildKit caches, kept between builds; the binary is
# copied out of the cache so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin spillway \
    && cp target/release/spillway /usr/local/bin/spillway

FROM debian:bookworm-slim
# ca-certificates: S3, STS and IRSA are reached over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 spillway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin spillway \
    && mkdir -p /etc/spillway /var/www/uploads \
    && chown spillway:spillway /var/www/uploads \
    && install -d -m 0700 -o spillway -g spillway /run/spillway
COPY --from=build /usr/local/bin/spillway /usr/local/bin/spillway
# The pid file and the upgrade socket: $XDG_RUNTIME_DIR/spillway, private to the user (mount a
# tmpfs there when the root file system is read-only, as examples/kubernetes.yaml does).
ENV XDG_RUNTIME_DIR=/run
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/spillway"]
CMD ["run", "--config", "/etc/spillway/proxy.yaml"]
