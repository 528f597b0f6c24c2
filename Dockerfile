# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels vaxreg
RUN useradd --system --create-home --uid 10001 --user-group vaxreg
USER vaxreg
WORKDIR /home/vaxreg
EXPOSE 8000
ENTRYPOINT ["vaxreg"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
