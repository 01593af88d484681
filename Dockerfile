# Multi-stage build of every Cinema Chat binary; the runtime image is Debian
# slim with mpv/ffmpeg/espeak-ng only where a service needs them.
FROM rust:1-bookworm AS build
ENV GGML_NATIVE=OFF CARGO_TARGET_DIR=/target
# whisper-rs builds whisper.cpp: cmake, and libclang for its bindings.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/target \
    cargo build --release --locked \
 && mkdir -p /out \
 && cp /target/release/room-manager /target/release/stt /target/release/llm \
       /target/release/clip-selector /target/release/status-store \
       /target/release/dashboard-gateway /target/release/pi-spawner \
       /target/release/pi-client /target/release/cinema /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ffmpeg espeak-ng fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/cinema --create-home cinema
COPY --from=build /out/ /usr/local/bin/
USER cinema
WORKDIR /var/lib/cinema
