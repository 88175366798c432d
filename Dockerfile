FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY twin ./twin
COPY data_models ./data_models
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["twin", "serve", "--host", "0.0.0.0"]
