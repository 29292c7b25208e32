# One-shot container: docker run --rm -t -v "$PWD:/data" augcli run /data/recipe.yaml
# The lean core, exactly what `pip install .` installs: one OpenCV wheel (headless), no
# imgaug, nothing that needs libGL.
#
# A Dask worker for runs beyond one machine (README, "Beyond one machine"):
#   docker build --target worker -t augcli-worker .
#   docker run --rm augcli-worker tcp://scheduler:8786 --nthreads 1
FROM python:3.11.11-slim-bookworm AS base

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/augcli
COPY pyproject.toml README.md LICENSE ./
COPY augcli ./augcli
RUN useradd --create-home --uid 1000 augcli

# augcli with Dask and every object store; `dask worker` is the entrypoint. Start the
# client (augcli run --cluster ...) from this same image, so that versions match.
FROM base AS worker
RUN pip install --no-cache-dir '.[distributed,cloud]' \
    && augcli --version && dask --version \
    && test "$(pip list 2>/dev/null | grep -ci '^opencv')" = 1
USER augcli
WORKDIR /data
ENTRYPOINT ["dask", "worker"]

# The default target (last): the augcli command.
FROM base AS cli
RUN pip install --no-cache-dir . \
    && augcli --version \
    && test "$(pip list 2>/dev/null | grep -ci '^opencv')" = 1 \
    && python -c "import cv2; print('OpenCV', cv2.__version__)"
USER augcli
WORKDIR /data
ENTRYPOINT ["augcli"]
