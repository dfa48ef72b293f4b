# One static-ish binary on a slim base. librdkafka is built from source by
# rdkafka-sys, which needs only the C toolchain the rust image ships.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin galley

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/galley /usr/local/bin/galley
COPY config/galley.toml /etc/galley/galley.toml
ENV GALLEY_CONFIG=/etc/galley/galley.toml
USER 65532:65532
ENTRYPOINT ["galley"]
CMD ["run"]
