# veil: static binary on distroless. Build: docker build -t veil .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/veil ./cmd/veil \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/veil /usr/local/bin/veil
# The data directory (local key, Badger store, embedded broker state) belongs to the runtime user;
# a named volume mounted here inherits this ownership.
COPY --from=build --chown=65532:65532 /out/data /var/lib/veil
USER 65532:65532
VOLUME ["/var/lib/veil"]
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/veil"]
CMD ["run", "-config", "/etc/veil/veil.yaml"]
