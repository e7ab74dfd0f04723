# syntax=docker/dockerfile:1
# One image for the web and the workers.
#   CPU TensorFlow (web, the CPU lane worker, a worker without a GPU): docker build -t stacklab .
#   CUDA TensorFlow (GPU workers):                   docker build --build-arg EXTRAS=gpu -t stacklab:gpu .
FROM python:3.11-slim

# Optional extras of the project: "" (CPU) or "gpu" (tensorflow[and-cuda]).
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KERAS_BACKEND=tensorflow \
    TF_CPP_MIN_LOG_LEVEL=2 \
    STACKLAB_DATA_DIR=/data

# /data belongs to the app user, so a named volume mounted there starts out writable.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin stacklab \
    && mkdir -p /data \
    && chown stacklab:stacklab /data

WORKDIR /app

# Dependencies first, from the lock alone, so a code change does not re-download
# TensorFlow: every package at its locked version (requirements.lock, or
# requirements-gpu.lock with EXTRAS=gpu; scripts/lock makes them from pyproject.toml).
# With EXTRAS=gpu, tensorflow-cpu (a base dependency on x86_64) and tensorflow[and-cuda] both
# land in one package folder, whichever was unpacked last winning: drop the CPU build's
# files and put the CUDA build's back.
COPY requirements.lock requirements-gpu.lock ./
RUN pip install -r "requirements${EXTRAS:+-$EXTRAS}.lock" \
    && if [ "$EXTRAS" = "gpu" ]; then \
         tf_version="$(pip show tensorflow | sed -n 's/^Version: //p')" \
         && pip uninstall -y tensorflow-cpu \
         && pip install --no-deps --force-reinstall "tensorflow==${tf_version}"; \
       fi

COPY pyproject.toml README.md ./
COPY alembic.ini ./
COPY jobspec/ jobspec/
COPY store/ store/
COPY backend/ backend/
COPY worker/ worker/
COPY cli/ cli/
COPY client/ client/
COPY templates/ templates/
COPY static/ static/
# Editable: the code stays in /app only, next to templates/ and static/, which the web finds
# relative to its package (a regular install would look for them in site-packages).
RUN pip install --no-deps -e . && rm -rf build ./*.egg-info

USER stacklab
EXPOSE 8000
# cli/processes.py web_command's flags (docs/security-web.md, "The server's edges").
CMD ["uvicorn", "backend.main:app", "--http", "backend.http_edges:EdgeProtocol", "--no-proxy-headers", "--host", "0.0.0.0", "--port", "8000"]
