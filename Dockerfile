# syntax=docker/dockerfile:1
# Build stage: compile a release binary.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY tests ./tests
COPY examples ./examples
COPY benches ./benches
# No .git in the build context: pass the commit for `mcp-authd --version`
# (docker build --build-arg MCP_AUTHD_COMMIT=$(git rev-parse --short=12 HEAD) .).
ARG MCP_AUTHD_COMMIT=unknown
RUN MCP_AUTHD_COMMIT=$MCP_AUTHD_COMMIT cargo build --release --locked --bin mcp-authd

# Runtime stage: a small image with only the binary, running as a non-root user.
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 mcp-authd \
 && useradd --system --uid 10001 --gid mcp-authd --home-dir /data --shell /usr/sbin/nologin mcp-authd \
 && mkdir -p /config /data \
 && chown mcp-authd:mcp-authd /data \
 && chmod 0700 /data
COPY --from=build /src/target/release/mcp-authd /usr/local/bin/mcp-authd

# No configuration is baked in: mount your servers.json at /config/servers.json (read-only)
# and pass its secrets as environment variables ("jwtSecret": "${MCP_AUTH_JWT_SECRET}").
# Without one the server stops at start, naming the missing file. State goes to /data.
ENV MCP_CONFIG=/config/servers.json \
    MCP_AUTH_SERVER_PATH=/data/auth_server.json
VOLUME ["/data"]
USER mcp-authd:mcp-authd
EXPOSE 8080
# Healthy while /readyz answers 200 (the store works); `mcp-authd health` asks
# 127.0.0.1:8080, where CMD listens, so no curl is needed in the image.
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s --retries=3 \
  CMD ["mcp-authd", "health"]
# SIGTERM drains in-flight requests for up to 30 s: stop with `docker stop -t 45`.
STOPSIGNAL SIGTERM
# Inside a container the proxy reaches us over the container network, not loopback, hence
# --insecure: keep the port unpublished except to the reverse proxy.
ENTRYPOINT ["mcp-authd"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--insecure"]
