# A local stand-in for the public postgres:15-bookworm image, for machines that cannot pull it
# (this repository's tests): Debian's PostgreSQL 15 on a Debian base built with debootstrap.
# It honours the public image's contract as far as compose.yaml uses it: POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB create the first user and database in an empty
# /var/lib/postgresql/data; pg_isready is on PATH for the health check.
#   docker build -f deploy/compose/images/postgres.Dockerfile -t local/postgres:debian deploy/compose/images
# The base: a Debian bookworm image (the tests import one made with debootstrap).
ARG BASE_REPO=local/python
ARG BASE_TAG=3.11-bookworm
FROM ${BASE_REPO}:${BASE_TAG}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:${PATH} \
    PGDATA=/var/lib/postgresql/data
# Debian's package picks the postgres user's id at install time: the name is what is stable.
# hadolint ignore=DL3066
USER postgres
EXPOSE 5432
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["pg_isready", "--host=127.0.0.1"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres"]
