# One-shot container: docker run --rm -t -v "$PWD:/data" augcli run /data/recipe.yaml
# The lean core, exactly what `pip install .` installs: one OpenCV wheel (headless), no
# imgaug, nothing that needs libGL.
FROM python:3.11.11-slim-bookworm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/augcli
COPY pyproject.toml README.md LICENSE ./
COPY augcli ./augcli

RUN pip install --no-cache-dir . \
    && augcli --version \
    && test "$(pip list 2>/dev/null | grep -ci '^opencv')" = 1 \
    && python -c "import cv2; print('OpenCV', cv2.__version__)"

RUN useradd --create-home --uid 1000 augcli
USER augcli
WORKDIR /data
ENTRYPOINT ["augcli"]
