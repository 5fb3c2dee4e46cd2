# The worker image of `snapline ecs restore`: snapline is the entrypoint, and
# each task's command override runs `snapline worker shard ...` or
# `snapline worker archive-shard ...` (see "ECS restores" in the README).
#
#   docker build -t snapline .
#
# better-sqlite3 and the hole-seeking addon compile from source during
# `npm ci`, so the build stage has a C++ toolchain; the final stage keeps only
# the built package and its production dependencies.

FROM node:20-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# npm ci runs the build (prepare: tsc); the dev dependencies go afterwards.
RUN npm ci && npm prune --omit=dev

FROM node:20-slim
ENV NODE_ENV=production \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/bin ./bin
COPY --from=build /app/dist ./dist
COPY --from=build /app/build ./build
COPY --from=build /app/node_modules ./node_modules
RUN chmod 755 /app/bin/snapline.js && ln -s /app/bin/snapline.js /usr/local/bin/snapline
# Tasks write nothing but a scratch data directory under the home of user node.
USER node
ENTRYPOINT ["snapline"]
CMD ["--help"]
