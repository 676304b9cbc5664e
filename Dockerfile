# One image for every role of the production deployment (docker-compose.yml):
#   billing gateway | billing worker | billing api | billing migrate | billing close
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Dependencies first, so that a code change does not reinstall them. setuptools needs the
# package folders to exist to read the metadata; empty ones are enough for this layer.
COPY pyproject.toml ./
RUN mkdir -p app schemas ingest stream rating billing api \
    && touch README.md app/__init__.py \
    && pip install . \
    && pip uninstall -y komunalno-billing \
    && rm -rf app README.md

COPY . .
RUN pip install --no-deps . \
    && useradd --system --no-create-home --uid 10001 billing \
    && mkdir -p /srv/billing && chown billing /srv/billing

USER billing
WORKDIR /srv/billing
ENV BILLING_HOST=0.0.0.0
EXPOSE 8000 9108
CMD ["billing", "api"]
