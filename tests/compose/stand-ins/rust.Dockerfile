# Stand-in for rust:1.94-slim-bookworm (test-only): the host's own Rust toolchain (no
# rustup download is possible offline; its version is in RUST_VERSION and the label) with
# what the official slim image adds to Debian: gcc, libc6-dev, ca-certificates.
FROM debian:bookworm-slim
ARG RUST_VERSION
LABEL org.iptrack.stand-in="host rust toolchain ${RUST_VERSION} + debian gcc, libc6-dev, host CA bundle"
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev >/dev/null \
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
COPY toolchain/ /usr/local/rustup/toolchains/host/
RUN mkdir -p /usr/local/cargo/bin \
    && ln -s /usr/local/rustup/toolchains/host/bin/* /usr/local/cargo/bin/ \
    && rustc --version && cargo --version
