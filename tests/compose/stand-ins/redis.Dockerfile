# Stand-in for redis:7-alpine (test-only): Debian bookworm's redis-server 7.0 with an
# entrypoint doing what the official image's does (redis user, protected mode off, /data).
FROM debian:bookworm-slim
LABEL org.iptrack.stand-in="debian bookworm redis-server 7.0"
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
