# syntax=docker/dockerfile:1
#
# mayfly container image. Two stages on the same pinned Node 20 base:
#   build    installs a C++ toolchain (for the native pkcs11js addon) when the base lacks
#            one, every dependency with `npm ci`, compiles with `npm run build`, then drops
#            the development dependencies with `npm prune --omit=dev` (the same three
#            commands CI runs: test/integration/deploy/image-build.test.ts);
#   runtime  the compiled JavaScript (without the development OIDC issuer), the production
#            node_modules and the shipped config, owned by root and run as the unprivileged
#            numeric user 65532, so the image works with a read-only root filesystem (only
#            /tmp needs to be writable).
#
# Build: docker build -t mayfly:0.1.0 .
# Run:   docker run --read-only --tmpfs /tmp -p 8080:8080 -p 8081:8081 -p 2112:2112 mayfly:0.1.0
# TSA:   the same image, another command (API 3000, metrics 2113):
#        docker run --read-only --tmpfs /tmp -p 3000:3000 -p 2113:2113 \
#          --entrypoint node mayfly:0.1.0 dist/services/tsa/main.js
#
# The base is node:20.20.2-bookworm-slim pinned by its manifest-list digest (the Node
# version CI runs). Update both together.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0

FROM ${NODE_IMAGE} AS build
WORKDIR /src
ENV npm_config_update_notifier=false
COPY package.json package-lock.json ./
# pkcs11js (the PKCS#11 signer's binding) is a native addon: node-gyp needs python3, make
# and a C++ compiler, in this stage only (the runtime stage gets the built addon).
RUN { command -v python3 && command -v make && command -v g++; } >/dev/null 2>&1 || \
    { apt-get update && apt-get install -y --no-install-recommends python3 make g++ && \
      rm -rf /var/lib/apt/lists/*; }
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY services ./services
COPY scripts ./scripts
RUN npm run build
RUN npm prune --omit=dev --no-audit --no-fund

# The CT log (services/ctlog/): the same files, its own entry point and port. Build it with
#   docker build --target ctlog -t mayfly-ctlog:0.1.0 .
# This stage comes before `runtime` so that a plain `docker build` still builds the CA.
FROM ${NODE_IMAGE} AS ctlog
ENV NODE_ENV=production \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
# The log's own folder and the shared one, which is all that its entry point imports
# (test/unit/deploy/dockerfile.test.ts follows the imports): not the CA, not the development
# OIDC issuer.
COPY --from=build /src/dist/services/common ./dist/services/common
COPY --from=build /src/dist/services/ctlog ./dist/services/ctlog
USER 65532:65532
# RFC 6962 / static-ct-api and /metrics on one port.
EXPOSE 6962
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.MAYFLY_CTLOG_PORT || 6962}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/services/ctlog/main.js"]

FROM ${NODE_IMAGE} AS runtime
# MALLOC_ARENA_MAX and the node flags of the ENTRYPOINT: the CA's memory settings
# (services/common/ca-runtime.ts, measured in bench/results/memory.md).
# No MAYFLY_WORKERS here: outside Kubernetes the CA runs a worker per core the container may
# use (its cgroup CPU limit, `docker run --cpus`, rounded up; services/common/cpu-limit.ts),
# one process under Kubernetes (KUBERNETES_SERVICE_HOST); `-e MAYFLY_WORKERS=N` overrides.
ENV NODE_ENV=production \
    HOME=/tmp \
    TMPDIR=/tmp \
    MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
# The compiled deployables this image runs (the CA; the TSA, the prober, the CT log and the
# operator CLI with another command), one folder each: not the development OIDC issuer
# (services/dev-issuer/, its own process in a checkout: `npm run dev-issuer`), which the CA
# refuses to start with (MAYFLY_DEV_ISSUER*). test/unit/deploy/dockerfile.test.ts checks that
# every folder of services/ but that one is here.
COPY --from=build /src/dist/services/ca ./dist/services/ca
COPY --from=build /src/dist/services/cli ./dist/services/cli
COPY --from=build /src/dist/services/common ./dist/services/common
COPY --from=build /src/dist/services/ctlog ./dist/services/ctlog
COPY --from=build /src/dist/services/prober ./dist/services/prober
COPY --from=build /src/dist/services/tsa ./dist/services/tsa
# fulcio.proto and health.proto, which the gRPC server loads at start (beside its module).
COPY --from=build /src/services/common/grpc/proto ./dist/services/common/grpc/proto
COPY config ./config
USER 65532:65532
# API, gRPC, metrics.
EXPOSE 8080 8081 2112
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.MAYFLY_PORT || 8080}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "--heap-growing-percent=30", "dist/services/ca/main.js"]
