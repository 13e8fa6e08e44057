# A local stand-in for the public prom/prometheus image, for machines that cannot pull it (this
# repository's tests): Debian's prometheus package on a Debian base built with debootstrap.
# Laid out like the public image, so compose.yaml runs either unchanged: the binary answers
# the same flags, runs as nobody, and keeps its data in /prometheus.
#   docker build -f deploy/compose/images/prometheus.Dockerfile -t local/prometheus:debian deploy/compose/images
# The base: a Debian bookworm image (the tests import one made with debootstrap).
ARG BASE_REPO=local/python
ARG BASE_TAG=3.11-bookworm
FROM ${BASE_REPO}:${BASE_TAG}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus /etc/prometheus \
    && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
# python3 is in the base (compose.yaml's own checks use the HTTP endpoints as well).
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/-/ready', timeout=3)"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
