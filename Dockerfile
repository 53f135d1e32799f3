# The pullmap image: the esbuild bundle (dependencies included) on a distroless Node 24 base, for people
# who build with Docker. Here and in CI the image is built by scripts/build-image.sh instead (no base
# image from outside: Debian packages, the npm Node binary, the same bundle), with this final stage's
# layout (/nodejs/bin/node, /app/dist), USER, WORKDIR, ENTRYPOINT and CMD; test/image/image.test.ts
# reads those four lines from this file and fails if the built image disagrees.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
COPY examples ./examples
RUN npm run build

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
COPY --from=build /src/dist ./dist
USER 65532:65532
# Four flags keep RSS down under load; bench/ runs pullmap with exactly these flags (docs/decisions.md,
# "Webhook memory: what the process loads, and two V8 flags").
# --max-semi-space-size=2: the webhook near 120 MB instead of ~165 MB with Node's default; costs the
#   webhook a few µs of CPU per review.
# --heap-growing-percent=50: a full GC when the old generation has grown by about half since the last
#   one. V8's own factor is up to 4x when GC is cheap, so the webhook's heap (15 MB live) grew to 52 MB
#   between full GCs, and the pages freed then stayed with the process.
# --no-concurrent-recompilation: TurboFan compiles on the main thread. On a worker thread each compile's
#   memory ends up in that thread's malloc arena, which keeps it: 10-15 MB of the webhook's RSS.
# --liftoff-only: undici's HTTP parser is WebAssembly, and once upstream answers have run through it
#   often enough V8 recompiles its large state machine with TurboFan on a background thread. That one
#   compilation takes 10-20 MB of compiler memory, which the thread's malloc arena keeps: the cache's
#   peak RSS rose from ~121 to ~139 MB at its first by-tag manifest burst. The baseline code is fast
#   enough for manifests, tokens and probes (blobs do not use it: src/cache/transport/wire.ts).
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=2", "--heap-growing-percent=50", "--no-concurrent-recompilation", "--liftoff-only", "/app/dist/pullmap.js"]
CMD ["--help"]
