# mmsearch in a container: the server (default) or an import worker (`mmsearch worker`).
#   docker build -t mmsearch .
#   docker run -p 8000:8000 -v mmsearch-data:/data -v mmsearch-models:/models mmsearch
FROM python:3.11-slim-bookworm

# fonts for Chinese text in pictures the OCR reads and the console shows; nothing else from apt
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei=0.2.0-beta-3.1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# this project itself (its dependencies are pinned by their lower bounds in pyproject.toml)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[milvus,s3]" \
 && useradd --system --uid 10001 --home-dir /data mmsearch \
 && mkdir -p /data /models \
 && chown mmsearch /data /models

USER 10001
# data (tables, catalog unless MMSEARCH_CATALOG_URL, staged imports) and the image model cache: two volumes
ENV MMSEARCH_HOME=/data HF_HOME=/models PYTHONUNBUFFERED=1
VOLUME ["/data", "/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
CMD ["mmsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
