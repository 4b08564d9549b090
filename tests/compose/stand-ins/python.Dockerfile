# Stand-in for python:…-alpine (test-only, built only when docker-compose.yml names a
# python image): Debian bookworm's Python 3.11, standard library only.
FROM debian:bookworm-slim
LABEL org.iptrack.stand-in="debian bookworm python3 3.11"
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends python3 >/dev/null \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
