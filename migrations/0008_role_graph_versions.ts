// A version per realm of its role graph: roles (with their client's clientId), composite edges,
// groups (their tree) and group role mappings. Triggers bump it in the same transaction as any
// change, from whichever writer (admin API, import, LDAP and Finesse sync), so a server that keeps
// the graph in memory (src/realms/role-graph.ts) can tell, in the same statement that reads a
// user's direct role and group ids, whether its copy is current.
//
// The triggers are deferred to commit: the bump locks the realm's version row, and a lock taken at
// the first change would be held while the transaction goes on writing, so two concurrent LDAP
// imports creating the same groups in different orders could deadlock. At commit a transaction
// waits for nothing else. One bump per realm and transaction (a transaction-local setting
// remembers the realms already bumped), so a bulk import costs one update, not one per row.
import { sql, type Kysely } from 'kysely';

import { executeScript } from './script.ts';

type Event = 'INSERT' | 'UPDATE' | 'DELETE';
const EVERY_EVENT: Event[] = ['INSERT', 'UPDATE', 'DELETE'];

/**
 * The realm of a changed row (`changed` is NEW or OLD): rows with realm_id, and rows that reach a
 * realm through a parent (NULL when the parent went first, by cascade: its own trigger bumped). A
 * client counts when renamed (its roles are named by its clientId); new clients have no roles yet
 * and a deleted client's roles go with it.
 */
const BUMPS: Array<{ table: string; realmOf: string; events: Event[] }> = [
  { table: 'roles', realmOf: 'changed.realm_id', events: EVERY_EVENT },
  { table: 'groups', realmOf: 'changed.realm_id', events: EVERY_EVENT },
  { table: 'role_composites', realmOf: '(SELECT realm_id FROM roles WHERE id = changed.parent_id)', events: EVERY_EVENT },
  { table: 'group_roles', realmOf: '(SELECT realm_id FROM groups WHERE id = changed.group_id)', events: EVERY_EVENT },
  { table: 'clients', realmOf: 'changed.realm_id', events: ['UPDATE'] },
];

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    CREATE TABLE role_graph_versions (
      realm_id uuid PRIMARY KEY REFERENCES realms(id) ON DELETE CASCADE,
      version bigint NOT NULL
    );
    INSERT INTO role_graph_versions (realm_id, version) SELECT id, 1 FROM realms;
  `);
  // The realm row's join skips a realm deleted in this transaction (its rows went by cascade).
  await sql.raw(`CREATE FUNCTION bump_role_graph(realm uuid) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
      bumped text := coalesce(current_setting('cloakroom.role_graph_bumped', true), '');
    BEGIN
      IF realm IS NULL OR position(realm::text IN bumped) > 0 THEN RETURN; END IF;
      PERFORM set_config('cloakroom.role_graph_bumped', bumped || realm::text || ' ', true);
      INSERT INTO role_graph_versions (realm_id, version) SELECT id, 1 FROM realms WHERE id = realm
        ON CONFLICT (realm_id) DO UPDATE SET version = role_graph_versions.version + 1;
    END $$`).execute(db);
  for (const { table, realmOf, events } of BUMPS) {
    await sql.raw(`CREATE FUNCTION ${table}_bump_role_graph() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        changed ${table}%ROWTYPE;
      BEGIN
        IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
        PERFORM bump_role_graph(${realmOf});
        RETURN NULL;
      END $$`).execute(db);
    await sql.raw(`CREATE CONSTRAINT TRIGGER ${table}_role_graph AFTER ${events.join(' OR ')} ON ${table}
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${table}_bump_role_graph()`).execute(db);
  }
}
