#!/bin/sh
# Stand-in of the official nginx image's entrypoint (test-only): each
# /etc/nginx/templates/NAME.template becomes /etc/nginx/conf.d/NAME with the ${VARIABLES}
# that are set in the environment filled in; nginx's own $variables stay.
set -eu
if [ "$1" = nginx ] && [ -d /etc/nginx/templates ]; then
  defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
  for template in /etc/nginx/templates/*.template; do
    [ -f "$template" ] || continue
    out=/etc/nginx/conf.d/$(basename "$template" .template)
    envsubst "$defined" <"$template" >"$out"
  done
fi
exec "$@"
