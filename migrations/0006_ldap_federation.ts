// LDAP federation: imported users are found by their provider and LDAP_ID (the entry's uuid) at
// every sync and first login. Without this index each lookup scans the realm's users, which makes
// importing n entries cost n² row reads (100,000 entries: hours instead of minutes). It also
// serves the sync's sweep of a provider's users and remove-imported-users / unlink-users. The
// periodic sync scheduler finds the LDAP providers of all realms by provider type and id.
import type { Kysely } from 'kysely';

import { executeScript } from './script.ts';

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    CREATE INDEX users_federation_ldap_id ON users (realm_id, federation_link, (attributes #>> '{LDAP_ID,0}'))
      WHERE federation_link IS NOT NULL;
    CREATE INDEX components_provider ON components (provider_type, provider_id)
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    DROP INDEX components_provider;
    DROP INDEX users_federation_ldap_id
  `);
}
