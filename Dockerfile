# syntax=docker/dockerfile:1
# One image, one binary: `serve` runs the SCIM server, `controller` the operator.
# Build: docker build -t REGISTRY/scim-operator:TAG . (BuildKit; cache mounts keep the
# crate registry and the target directory between builds).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
COPY migrations ./migrations
# The console's pages, compiled into the binary (askama).
COPY templates ./templates
# Cargo.toml declares the benchmark examples by path; they must exist to load the manifest.
COPY bench/*.rs ./bench/
# Cargo judges freshness by mtime; sources copied from an archive can be older than the cached
# target, so mark them new (this step only runs when the copied sources changed).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find src migrations templates -type f -exec touch {} + \
    && cargo build --release --locked --bin scim-operator \
    && install -D -m 0755 target/release/scim-operator /out/scim-operator

# No shell, no package manager: libc, libgcc, CA certificates and a nonroot user only.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/scim-operator /usr/local/bin/scim-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/scim-operator"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
