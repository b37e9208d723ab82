# Static binaries of every hail program in one small image; the compose
# stack picks the program with its command.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ \
    ./services/nats ./services/discovery ./services/router ./services/echo ./services/dev ./services/agent ./services/greeter
# JetStream's data directory and the credentials' (secure init): a new
# named volume mounted here starts as a copy of it, owned by the user the
# programs run as.
RUN mkdir /data /secure

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
COPY --from=build --chown=nonroot:nonroot /data /data
COPY --from=build --chown=nonroot:nonroot /secure /secure
USER nonroot
ENTRYPOINT []
