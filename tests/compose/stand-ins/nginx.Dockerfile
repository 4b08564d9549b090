# Stand-in for nginx:…-alpine (test-only, built only when docker-compose.yml names an nginx
# image): Debian bookworm's nginx 1.22 with an entrypoint doing what the official image's
# does with /etc/nginx/templates/*.template (envsubst of the variables that are set).
FROM debian:bookworm-slim
LABEL org.iptrack.stand-in="debian bookworm nginx 1.22 + envsubst templates"
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends nginx-light gettext-base >/dev/null \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx-entrypoint.sh /docker-entrypoint.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 80
# As the official image: SIGQUIT is nginx's graceful shutdown.
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
