# Stand-in for debian:bookworm-slim (test-only; scripts/compose-stand-ins.sh): a
# debootstrapped minbase bookworm, plus the host's CA bundle as a local certificate.
ARG BASE
FROM ${BASE}
LABEL org.iptrack.stand-in="debian bookworm minbase (debootstrap) + host CA bundle"
ENV DEBIAN_FRONTEND=noninteractive
COPY host-ca-bundle.crt /usr/local/share/ca-certificates/host-ca-bundle.crt
# As the official image (its /etc/apt/apt.conf.d/docker-clean): apt keeps no package
# files or package caches in a layer (without this they add about 100 MB to a stage that
# runs apt-get install).
RUN printf '%s\n' \
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' \
      >/etc/apt/apt.conf.d/docker-clean \
    && rm -f /var/cache/apt/*.bin
CMD ["bash"]
