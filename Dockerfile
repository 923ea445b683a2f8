# The juy-calendar server image.
#   docker build -t juy-calendar .
# Stage 1 runs the release build (the same command as the README); stage 2
# holds only the binary and the shared libraries it loads.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The builder image already has libpq-dev, which diesel links against; the
# protos compile in pure Rust (protox), so no protoc is needed.
COPY . .
RUN cargo build --release --locked --no-default-features -p juy-calendar

FROM debian:bookworm-slim
# Unpinned on purpose: bookworm's security updates should land on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libpq5 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 juy \
    && useradd --uid 10001 --gid juy --no-create-home --shell /usr/sbin/nologin juy
COPY --from=builder /src/target/release/juy-calendar /usr/local/bin/juy-calendar
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8443 9443
# No HEALTHCHECK: the slim image has no curl or wget to run one. Orchestrators
# should probe the HTTP endpoint /readyz (liveness and readiness) instead.
ENTRYPOINT ["juy-calendar"]
CMD ["serve"]
