# syntax=docker/dockerfile:1
# One image, one binary: `serve` runs the SCIM server, `controller` the operator.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin scim-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/scim-operator /usr/local/bin/scim-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/scim-operator"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
