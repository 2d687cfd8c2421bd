# syntax=docker/dockerfile:1
# One image for every mode:
#   docker run -p 8000:8000 ticketd                       (monolith, the default)
#   docker run ticketd vacancy        /  docker run ticketd ticket --vacancy-url http://vacancy:8001

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so editing our code does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/store.rs \
    && echo 'fn main() {}' > benches/load.rs \
    && echo 'fn main() {}' > benches/inventory.rs \
    && echo 'fn main() {}' > benches/postgres.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && mkdir -p /out/data \
    && cp target/release/ticketd /out/ticketd \
    && strip /out/ticketd

# Distroless: glibc and CA certificates only, no shell, runs as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ticketd /usr/local/bin/ticketd
COPY --from=build --chown=65532:65532 /out/data /var/lib/ticketd
COPY config /etc/ticketd
WORKDIR /var/lib/ticketd
USER 65532:65532
ENV TICKETD_HOST=0.0.0.0 \
    TICKETD_LOG_FORMAT=json
EXPOSE 8000 8001 8002
ENTRYPOINT ["/usr/local/bin/ticketd"]
CMD ["monolith"]
