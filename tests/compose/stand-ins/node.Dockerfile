# Stand-in for node:22-bookworm-slim (test-only): Debian bookworm's nodejs and npm (Node.js
# 18, not 22; the build only runs `npm pack`).
FROM debian:bookworm-slim
LABEL org.iptrack.stand-in="debian bookworm nodejs 18 + npm + host CA bundle"
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates nodejs npm >/dev/null \
    && rm -rf /var/lib/apt/lists/*
# Node.js reads its own root store unless told; the system bundle holds the host's chain.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
