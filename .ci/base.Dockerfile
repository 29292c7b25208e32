# CI's stand-in for python:3.11-slim-bookworm, made where no image registry is reachable:
# a debootstrap'd bookworm (imported as augcli-ci-rootfs by .ci/docker) with Debian's
# Python and a venv at /usr/local, so that `python` and `pip` are on PATH as in the
# official image. The host's CA bundle lets pip through a proxy that re-signs TLS: it
# belongs to this CI base only, never to the project's Dockerfile.
FROM augcli-ci-rootfs
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && python3 -m venv /usr/local
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 LANG=C.UTF-8
CMD ["python"]
