# A local stand-in for the public prom/prometheus image, for machines that cannot pull it (this
# repository's tests): Debian's prometheus package on a Debian base built with debootstrap.
# Laid out like the public image, so compose.yaml runs either unchanged: the binary answers
# the same flags, runs as nobody, and keeps its data in /prometheus.
#   docker build -f deploy/compose/images/prometheus.Dockerfile -t local/prometheus:debian deploy/compose/images
# The base: a Debian bookworm image (the tests import one made with debootstrap).
ARG BASE=local/python:3.11-bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus /etc/prometheus \
    && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
