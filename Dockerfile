# One-shot container: docker run --rm -t -v "$PWD:/data" augcli run /data/recipe.yaml
# The lean core, exactly what `pip install .` installs: one OpenCV wheel (headless), no
# imgaug, nothing that needs libGL.
#
# A Dask worker for runs beyond one machine (README, "Docker"):
#   docker build --target worker -t augcli-worker .
#   docker run --rm augcli-worker tcp://scheduler:8786 --nthreads 1
#
# Behind a proxy that re-signs TLS, lend pip your CA bundle for the build only (it is
# mounted while pip runs, never stored in an image):
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t augcli .
#
# The base is an argument so that a build without a registry can pass a local image with
# Python 3.11+ (`python` and `pip` on PATH); a user gets the official, pinned one.
ARG BASE=python:3.11.11-slim-bookworm

# The wheel, built once; the venvs below install it and its dependencies from PyPI.
# BuildKit (the default builder since Docker 23) runs the RUN --mount lines.
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY augcli ./augcli
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && pip wheel --no-deps --wheel-dir /wheels .

# Each venv holds augcli and its dependencies only: no pip, no setuptools, no packages'
# tests. pip's cache is a build cache mount, kept by the builder for the next build and
# never part of an image.
FROM build AS venv-cli
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install /wheels/*.whl \
    && test "$(/opt/venv/bin/pip list 2>/dev/null | grep -ci '^opencv')" = 1 \
    && /opt/venv/bin/pip uninstall -q -y pip setuptools \
    && find /opt/venv -type d -name tests -prune -exec rm -rf {} +

FROM build AS venv-worker
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install "$(ls /wheels/*.whl)[distributed,cloud]" \
    && test "$(/opt/venv/bin/pip list 2>/dev/null | grep -ci '^opencv')" = 1 \
    && /opt/venv/bin/pip uninstall -q -y pip setuptools \
    && find /opt/venv -type d -name tests -prune -exec rm -rf {} +

# What both final images share: the user and the environment, no build tools.
FROM ${BASE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 1000 augcli

# augcli with Dask and every object store; `dask worker` is the entrypoint. Start the
# scheduler (--entrypoint dask ... scheduler) and the client (--entrypoint augcli ...
# run --cluster ...) from this same image, so that versions match.
FROM runtime AS worker
COPY --from=venv-worker /opt/venv /opt/venv
RUN augcli --version && dask --version
USER augcli
WORKDIR /data
ENTRYPOINT ["dask", "worker"]

# The default target (last): the augcli command.
FROM runtime AS cli
COPY --from=venv-cli /opt/venv /opt/venv
RUN augcli --version && python -c "import cv2; print('OpenCV', cv2.__version__)"
USER augcli
WORKDIR /data
ENTRYPOINT ["augcli"]
