# syntax=docker/dockerfile:1
# nexus-server as a small, non-root container image.
#
#   docker build -t nexus-server .
#   docker run --rm -p 3000:3000 -v nexus-data:/data nexus-server          # development mode
#
# In production set NEXUS_ENV=production, NEXUS_CONFIG and the secrets (see docker-compose.yml
# and the README's "Run in production"). The build and runtime images must be the same Debian
# release (the binary links the system's glibc).
ARG DEBIAN_RELEASE=bookworm

FROM rust:1.95-slim-${DEBIAN_RELEASE} AS build
# Use the image's toolchain as is: rust-toolchain.toml would have rustup download rustfmt and
# clippy, which a release build does not need.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_INCREMENTAL=0
WORKDIR /src
COPY . .
# The cache mounts (BuildKit) keep the registry and compiled dependencies between builds; the
# binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p nexus-server \
    && cp target/release/nexus-server /usr/local/bin/nexus-server

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates for outbound HTTPS webhooks; curl for the health check below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 nexus \
    && useradd --system --uid 10001 --gid nexus --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin nexus \
    && mkdir -p /data /app \
    && chown nexus:nexus /data
COPY --from=build /usr/local/bin/nexus-server /usr/local/bin/nexus-server

# The data directory is a volume owned by the nexus user; a bind mount must be writable by
# uid 10001. The server reads `.env` from its working directory, /app (empty).
ENV DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json
VOLUME /data
WORKDIR /app
USER nexus:nexus
EXPOSE 3000

# /health/live answers 200 as long as the process serves HTTP (no I/O behind it).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT}/health/live" || exit 1

# Exec form: nexus-server is PID 1 and gets SIGTERM itself; it drains and exits 0 (forced exit
# after 30 s), so give `docker stop` more than that: `docker stop -t 40`, or compose's
# stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/nexus-server"]
