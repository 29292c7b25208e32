# One-shot container: docker run --rm -v "$PWD:/data" augcli run /data/recipe.yaml
FROM python:3.11-slim

WORKDIR /opt/augcli
COPY pyproject.toml README.md ./
COPY augcli ./augcli

# imgaug asks for opencv-python, which needs libGL; containers have none.
# Remove both OpenCV wheels (they share the cv2 folder) and keep only the
# headless one.
RUN pip install --no-cache-dir . \
    && pip uninstall -y opencv-python opencv-python-headless \
    && pip install --no-cache-dir opencv-python-headless \
    && augcli --version && python -c "import cv2, augcli.engine as e; e.load()"

RUN useradd --create-home --uid 1000 augcli
USER augcli
WORKDIR /data
ENTRYPOINT ["augcli"]
