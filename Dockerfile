# metastudio-operator container image.
#   docker build -t ghcr.io/metastudio-operator/metastudio-operator:0.1.0 .
# Builds a release binary on Debian 12 (glibc) and runs it on distroless
# cc-debian12 (glibc, libgcc, CA certificates; no shell, no package manager)
# as the unprivileged user 65532, matching the Helm chart's securityContext.

FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependencies first: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source change. Every target Cargo.toml
# names must exist for cargo to read it: the benchmarks get placeholders
# (they are never built here).
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/converge.rs \
 && echo 'fn main() {}' > benches/broker.rs \
 && echo 'fn main() {}' > benches/status_size.rs \
 && cargo build --release --locked \
 && rm -rf src

# The operator itself. Touch the sources so cargo rebuilds the crate over
# the placeholder built above.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/metastudio-operator /metastudio-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="metastudio-operator" \
      org.opencontainers.image.description="Keeps Huawei Cloud MetaStudio activation codes as ActivationCode resources declare" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /metastudio-operator /metastudio-operator
USER 65532:65532
# Metrics and health endpoints (/metrics, /healthz, /readyz).
EXPOSE 8080
ENTRYPOINT ["/metastudio-operator"]
CMD ["run"]
