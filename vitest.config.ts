import os from 'node:os';

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each file starts its own server on its own database; files run in parallel.
    pool: 'forks',
    // Most of a file's time is waiting (browsers, LDAP, child processes, the database), so files
    // run three at a time even on two cores: vitest's default (cores − 1) ran them one by one there.
    maxWorkers: Math.max(3, os.availableParallelism()),
    // On PGlite, every file's databases start from one migrated image made here.
    globalSetup: ['test/support/pglite-image.ts'],
  },
});
