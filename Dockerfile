# syntax=docker/dockerfile:1
# tenant-migrator: multi-stage build, slim non-root runtime.
# Base images are pinned to exact releases; pin them further by digest (@sha256:…) in your
# registry mirror.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
# Build settings (the embedded SQLite's compile flags).
COPY .cargo ./.cargo
# Patched dependencies (see vendor/README.md), needed to resolve the lock file.
COPY vendor ./vendor
RUN mkdir -p src migrations \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > build.rs \
    && cargo build --release --locked \
    && rm -rf src build.rs target/release/.fingerprint/tenant-migrator-*
COPY build.rs ./
COPY migrations ./migrations
COPY src ./src
RUN cargo build --release --locked \
    && strip target/release/tenant-migrator

FROM debian:12.11-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /data --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /src/target/release/tenant-migrator /usr/local/bin/tenant-migrator
USER app:app
WORKDIR /data
ENV BIND_ADDR=0.0.0.0:8080 \
    DATA_DIR=/data \
    LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["tenant-migrator", "healthcheck"]
ENTRYPOINT ["tenant-migrator"]
CMD ["serve"]
