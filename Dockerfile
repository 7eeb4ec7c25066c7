# syntax=docker/dockerfile:1
# The FreshCart image for the Python parts on Kubernetes: the stream processor, Airflow
# (api-server, scheduler, dag-processor, triggerer), MLflow, Evidently UI and the Feast server.
# It installs from requirements/lock.txt with the same commands as `make setup`.
# The scoring service has its own image, built by `bentoml containerize` (see helm/README.md).
#   docker build -t ghcr.io/freshcart/freshcart:0.1.0 .
FROM python:3.11-slim-bookworm

ARG UV_VERSION=0.13.8
ENV VENV=/opt/freshcart/.venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    PYTHONUNBUFFERED=1
ENV PY=${VENV}/bin/python \
    UV=${VENV}/bin/uv \
    PATH=${VENV}/bin:${PATH}

RUN groupadd --gid 10001 freshcart \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin freshcart

WORKDIR /opt/freshcart

# The pinned environment first, so a code change does not reinstall it (same steps as `make setup`).
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml README.md ./
RUN python3 -m venv ${VENV} \
 && ${PY} -m pip install -q "uv==${UV_VERSION}" \
 && ${UV} pip sync -q --python ${PY} requirements/lock.txt

# The package and the entry points of its tools (Airflow DAGs and plugins, Feast repo, BentoML, MLflow, Evidently).
COPY freshcart freshcart
COPY dags dags
COPY plugins plugins
COPY feature_repo feature_repo
COPY training training
COPY monitoring monitoring
COPY bentos bentos
RUN ${UV} pip install -q --python ${PY} --no-deps -e . \
 && ${PY} -c "import freshcart.settings"

USER 10001:10001
ENV HOME=/tmp \
    FRESHCART_PROFILE=production \
    FRESHCART_DATA_DIR=/data
CMD ["freshcart", "--help"]
