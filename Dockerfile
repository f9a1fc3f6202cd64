# caseflow engine image: `caseflow serve` by default; the same image runs `worker`, `relay`, `topology apply`
# and `agency-sim` (see deployments/compose.yaml and deployments/k8s/).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package with the exact versions pinned in pyproject.toml (all have manylinux wheels: no compiler).
COPY pyproject.toml README.md /src/
COPY engine/ /src/engine/
COPY adapters/ /src/adapters/
RUN pip install /src && rm -rf /src

RUN groupadd --system --gid 10001 caseflow \
    && useradd --system --uid 10001 --gid caseflow --home-dir /app --no-create-home --shell /usr/sbin/nologin caseflow

WORKDIR /app
# Models deployed on start, the agencies, users and holiday files. Secrets (signing keys, passwords) are never
# baked in: they are mounted at /etc/caseflow/keys/<code>.key (the key.file paths of agencies.yaml).
COPY bpmn/ /app/bpmn/
COPY deployments/agencies.yaml deployments/users.yaml /app/deployments/
COPY deployments/calendar/ /app/deployments/calendar/

# Installed as a package, caseflow cannot find deployments/ beside its sources: name every file explicitly.
ENV CASEFLOW_ENV=production \
    CASEFLOW_HOST=0.0.0.0 \
    CASEFLOW_PORT=8080 \
    CASEFLOW_BPMN_DIR=/app/bpmn \
    CASEFLOW_AGENCIES_FILE=/app/deployments/agencies.yaml \
    CASEFLOW_USERS_FILE=/app/deployments/users.yaml \
    CASEFLOW_CALENDAR_DIR=/app/deployments/calendar

USER 10001:10001
EXPOSE 8080

# GET /api/health (engine/api/main.py). Only `serve` listens; the compose file and k8s manifests switch this off
# for the worker, the simulators and the topology job.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CASEFLOW_PORT', '8080') + '/api/health', timeout=4)"]

ENTRYPOINT ["caseflow"]
CMD ["serve", "--host", "0.0.0.0"]
