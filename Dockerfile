# The chat backend image: one image, three commands (chat serve | worker | migrate).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY packages ./packages
COPY apps ./apps
RUN pip install . && useradd --create-home chat && mkdir -p /app/var && chown chat /app/var
USER chat
EXPOSE 8000
CMD ["chat", "serve", "--host", "0.0.0.0", "--port", "8000"]
