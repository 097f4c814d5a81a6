# The chat backend image: one image, three commands (chat serve | worker | migrate).
# Python 3.11: the version CI tests (the lock also resolves for 3.12 and 3.13).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements/lock.txt ./requirements/lock.txt
COPY packages ./packages
COPY apps ./apps
# The versions CI tested: every dependency pinned by the lock (scripts/lock).
RUN pip install --constraint requirements/lock.txt . && useradd --create-home chat && mkdir -p /app/var && chown chat /app/var
USER chat
EXPOSE 8000
CMD ["chat", "serve", "--host", "0.0.0.0", "--port", "8000"]
