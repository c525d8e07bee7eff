# metastudio-operator container image.
#   docker build -t ghcr.io/metastudio-operator/metastudio-operator:0.1.0 .
# Builds a release binary on Debian 12 (glibc) and runs it on distroless
# cc-debian12 (glibc, libgcc, CA certificates; no shell, no package manager)
# as the unprivileged user 65532, matching the Helm chart's securityContext.
# scripts/image packs the same layout without Docker (scripts/image_pack.py),
# and scripts/chart-check keeps the two in agreement.
#
# Both bases are pinned by digest, so a rebuild starts from the bytes that
# were reviewed rather than whatever a tag points at today (the tag stays
# for readers). To move to newer bases, pull them, read the new digests
# (`docker buildx imagetools inspect rust:1.95-bookworm`) and replace both.

FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS builder
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
 && echo 'fn main() {}' > benches/hostile_listing.rs \
 && cargo build --release --locked \
 && rm -rf src

# The operator itself. Touch the sources so cargo rebuilds the crate over
# the placeholder built above.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/metastudio-operator /metastudio-operator

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
LABEL org.opencontainers.image.title="metastudio-operator" \
      org.opencontainers.image.description="Keeps Huawei Cloud MetaStudio activation codes as ActivationCode resources declare" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /metastudio-operator /metastudio-operator
USER 65532:65532
# Metrics and health endpoints (/metrics, /healthz, /readyz).
EXPOSE 8080
ENTRYPOINT ["/metastudio-operator"]
CMD ["run"]
