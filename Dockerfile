# The one image for every ticker process: web (daphne), market, migrations.

# The dashboard's chart library (lightweight-charts, pinned in package-lock.json)
# is installed here and only its files are copied on: the image has no Node.js.
FROM node:20-slim AS npm
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: ws (devDependencies) is only the tests' Node client.
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
COPY --from=npm /app/node_modules/lightweight-charts/dist node_modules/lightweight-charts/dist
# Static files are collected into the image and served by WhiteNoise. The key
# below only lets settings load for this build step; it is not in the image's
# environment at run time.
RUN DJANGO_SECRET_KEY=collectstatic-only-build-step-key-never-used-at-run-time python manage.py collectstatic --noinput -v0

RUN useradd --create-home --uid 1000 ticker
USER ticker
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
