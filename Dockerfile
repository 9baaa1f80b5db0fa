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
COPY config/servers.example.json /config/servers.json

# servers.json is read from /config (mount yours read-only); state is written to /data.
ENV MCP_CONFIG=/config/servers.json \
    MCP_AUTH_SERVER_PATH=/data/auth_server.json
VOLUME ["/data"]
USER mcp-authd:mcp-authd
EXPOSE 8080
# Inside a container the proxy reaches us over the container network, not loopback, hence
# --insecure: keep the port unpublished except to the reverse proxy. Probe GET /healthz.
ENTRYPOINT ["mcp-authd"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--insecure"]
