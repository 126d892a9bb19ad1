# The official openpista image: the daemon (`openpista start`) with the web and Telegram
# channels, built from the release's own files, offline:
#
#   .venv/bin/python scripts/build-dists dist
#   .venv/bin/python scripts/wheelhouse wheels pip "openpista[web,telegram]"
#   docker build -t openpista .
#   docker run -d -v openpista:/data -p 8765:8765 -e OPENPISTA_WEB_TOKEN=... \
#     -e OPENAI_API_KEY=... openpista
#
# dist/ holds the built openpista wheels, wheels/ every dependency (and pip) as wheels made
# for the same Python (3.11). BASE is any image with python3.11 at its usual place.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG EXTRAS=web,telegram
COPY dist/ /tmp/dist/
COPY wheels/ /tmp/wheels/
RUN python3 -m venv --without-pip /opt/openpista \
 && /opt/openpista/bin/python "$(ls /tmp/wheels/pip-*.whl)/pip" install --quiet --no-cache-dir \
      --no-index --find-links /tmp/dist --find-links /tmp/wheels "openpista[${EXTRAS}]" \
 && /opt/openpista/bin/openpista --version

FROM ${BASE}
COPY --from=build /opt/openpista /opt/openpista
# A user of its own (no useradd needed); /data, the volume, is its home.
RUN echo "openpista:x:10001:10001:openpista:/data:/bin/false" >> /etc/passwd \
 && echo "openpista:x:10001:" >> /etc/group \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 700 /data
USER 10001:10001
# State in /data/.openpista: config.toml (optional: every option can come from the
# environment), memory.db, credentials.toml, the control socket.
ENV HOME=/data \
    OPENPISTA_CHANNELS__WEB__ENABLED=true \
    OPENPISTA_CHANNELS__WEB__HOST=0.0.0.0 \
    PATH=/opt/openpista/bin:/usr/local/bin:/usr/bin:/bin
VOLUME /data
WORKDIR /data
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["/opt/openpista/bin/openpista", "status"]
ENTRYPOINT ["/opt/openpista/bin/openpista"]
CMD ["start", "--no-terminal"]
