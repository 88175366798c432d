# The image of compose.yaml: twin, and the browser files it serves (CesiumJS for /viewer/, the API docs' pages)
# from npm as `make install` installs them, so the viewer and /docs work in the container, offline.
FROM node:20-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY twin ./twin
COPY data_models ./data_models
RUN pip install --no-cache-dir .
# twin finds node_modules in its working directory (twin/api/routers/viewer.py: package_dir)
COPY --from=web /web/node_modules ./node_modules
ENV TWIN_STORE=/data/twin-store TWIN_DEMO_DIR=/data/demo-city
EXPOSE 8000
CMD ["twin", "serve", "--host", "0.0.0.0", "--port", "8000", "--allow-anonymous-only"]
