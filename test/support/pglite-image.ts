// vitest globalSetup: on embedded PGlite (DATABASE_URL unset), migrates one database once and
// hands its files to every test file as an image. A fresh PGlite runs initdb, seconds of CPU per
// test server; loading the migrated image takes a fraction of that.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { PGlite } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import type { TestProject } from 'vitest/node';

import { migrateToLatest } from '../../src/store/db.ts';
import type { Database } from '../../src/store/schema.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** File holding a migrated PGlite database (dumpDataDir), or '' on PostgreSQL. */
    pgliteImagePath: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env.DATABASE_URL) {
    project.provide('pgliteImagePath', '');
    return undefined;
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cloakroom-pglite-image-'));
  const file = path.join(dir, 'migrated.tar');
  const pglite = await PGlite.create();
  try {
    await migrateToLatest(new Kysely<Database>({ dialect: new PGliteDialect(pglite) }));
    const image = await pglite.dumpDataDir('none');
    await fs.writeFile(file, Buffer.from(await image.arrayBuffer()));
  } finally {
    await pglite.close();
  }
  project.provide('pgliteImagePath', file);
  return () => fs.rm(dir, { recursive: true, force: true });
}
