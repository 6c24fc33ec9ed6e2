// Access keys (CXone-style API keys of application and human users): the key id is public, the
// secret is kept only as an HMAC-SHA256 digest under a key derived from the master key.
import type { Kysely } from 'kysely';

import { executeScript } from './script.ts';

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    CREATE TABLE access_keys (
      id text PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      secret_digest text NOT NULL,
      label text,
      enabled boolean NOT NULL DEFAULT true,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz,
      last_used_at timestamptz
    );
    CREATE INDEX access_keys_user ON access_keys (user_id);
    CREATE INDEX access_keys_realm ON access_keys (realm_id);
  `);
}
