// What the Admin REST API manages beyond the core model: identity provider instances and their
// mappers, components (user storage such as LDAP, key providers...), links of users to identity
// providers, realm default groups, user consents and brute-force state; plus the indexes that keep
// admin lists and prefix searches fast with 100,000 users in a realm.
import { sql, type Kysely } from 'kysely';

import { executeScript } from './script.ts';

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    CREATE TABLE identity_providers (
      internal_id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      alias text NOT NULL,
      provider_id text NOT NULL,
      display_name text,
      enabled boolean NOT NULL DEFAULT true,
      trust_email boolean NOT NULL DEFAULT false,
      store_token boolean NOT NULL DEFAULT false,
      link_only boolean NOT NULL DEFAULT false,
      hide_on_login boolean NOT NULL DEFAULT false,
      -- Non-secret config values; secret ones (clientSecret...) sealed in secrets_sealed.
      config jsonb NOT NULL DEFAULT '{}',
      secrets_sealed text,
      -- IdentityProviderRepresentation fields Cloakroom does not interpret (round-trip).
      extra jsonb NOT NULL DEFAULT '{}',
      UNIQUE (realm_id, alias)
    );

    CREATE TABLE identity_provider_mappers (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      identity_provider_id uuid NOT NULL REFERENCES identity_providers(internal_id) ON DELETE CASCADE,
      name text NOT NULL,
      mapper_type text NOT NULL,
      config jsonb NOT NULL DEFAULT '{}',
      UNIQUE (identity_provider_id, name)
    );

    CREATE TABLE components (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      -- The realm id for top-level components (as Keycloak), or the parent component's id.
      parent_id uuid NOT NULL,
      name text NOT NULL,
      provider_id text NOT NULL,
      provider_type text NOT NULL,
      sub_type text,
      -- Keycloak's MultivaluedHashMap: every value is a string array. Secret values sealed apart.
      config jsonb NOT NULL DEFAULT '{}',
      secrets_sealed text
    );
    CREATE INDEX components_realm_type ON components (realm_id, provider_type);
    CREATE INDEX components_parent ON components (parent_id);

    CREATE TABLE federated_identities (
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      identity_provider text NOT NULL,
      external_user_id text NOT NULL,
      external_username text,
      token_sealed text,
      PRIMARY KEY (user_id, identity_provider),
      UNIQUE (realm_id, identity_provider, external_user_id)
    );

    CREATE TABLE realm_default_groups (
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      group_id uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
      PRIMARY KEY (realm_id, group_id)
    );

    CREATE TABLE user_consents (
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      client_id uuid NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      granted_scopes jsonb NOT NULL DEFAULT '[]',
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, client_id)
    );

    -- Brute-force detection state per user (Keycloak's UserLoginFailure).
    CREATE TABLE login_failures (
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      num_failures integer NOT NULL DEFAULT 0,
      num_temporary_lockouts integer NOT NULL DEFAULT 0,
      last_failure bigint NOT NULL DEFAULT 0,
      last_ip_failure text,
      failed_login_not_before bigint NOT NULL DEFAULT 0,
      PRIMARY KEY (realm_id, user_id)
    );

    -- Prefix searches (Keycloak's default user search is prefix-based) use these.
    CREATE INDEX users_username_prefix ON users (realm_id, lower(username) text_pattern_ops);
    CREATE INDEX users_email_prefix ON users (realm_id, lower(email) text_pattern_ops);
    CREATE INDEX users_first_name_prefix ON users (realm_id, lower(first_name) text_pattern_ops);
    CREATE INDEX users_last_name_prefix ON users (realm_id, lower(last_name) text_pattern_ops);
    CREATE INDEX realms_name_prefix ON realms (lower(name) text_pattern_ops);
    CREATE INDEX roles_realm_name ON roles (realm_id, client_id, lower(name) text_pattern_ops);
    CREATE INDEX clients_client_id_prefix ON clients (realm_id, lower(client_id) text_pattern_ops);
    CREATE INDEX groups_parent ON groups (parent_id);
    CREATE INDEX group_roles_role ON group_roles (role_id);
    CREATE INDEX credentials_realm_type ON credentials (realm_id, type);

    -- The number of users of each realm, service accounts excluded (what GET /users/count answers
    -- without filters), kept by statement-level triggers: counting 100,000 index entries per
    -- request cost ~10 ms of database CPU.
    CREATE TABLE realm_user_counts (
      realm_id uuid PRIMARY KEY REFERENCES realms(id) ON DELETE CASCADE,
      people bigint NOT NULL DEFAULT 0
    );
  `);
  // Function bodies hold ';' at line ends, which executeScript would split: one statement each.
  await sql.raw(`CREATE FUNCTION realm_user_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      INSERT INTO realm_user_counts (realm_id, people)
        SELECT realm_id, count(*) FROM added_users WHERE service_account_client_id IS NULL GROUP BY realm_id
        ON CONFLICT (realm_id) DO UPDATE SET people = realm_user_counts.people + EXCLUDED.people;
      RETURN NULL;
    END $$`).execute(db);
  await sql.raw(`CREATE FUNCTION realm_user_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      UPDATE realm_user_counts c SET people = c.people - r.n
        FROM (SELECT realm_id, count(*) AS n FROM removed_users WHERE service_account_client_id IS NULL GROUP BY realm_id) r
        WHERE c.realm_id = r.realm_id;
      RETURN NULL;
    END $$`).execute(db);
  await sql.raw(`CREATE FUNCTION realm_user_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      INSERT INTO realm_user_counts (realm_id, people)
        SELECT realm_id, sum(n) FROM (
          SELECT realm_id, count(*) AS n FROM added_users WHERE service_account_client_id IS NULL GROUP BY realm_id
          UNION ALL
          SELECT realm_id, -count(*) FROM removed_users WHERE service_account_client_id IS NULL GROUP BY realm_id
        ) d GROUP BY realm_id HAVING sum(n) <> 0
        ON CONFLICT (realm_id) DO UPDATE SET people = realm_user_counts.people + EXCLUDED.people;
      RETURN NULL;
    END $$`).execute(db);
  await executeScript(db, `
    CREATE TRIGGER users_counted_insert AFTER INSERT ON users REFERENCING NEW TABLE AS added_users
      FOR EACH STATEMENT EXECUTE FUNCTION realm_user_counts_add();
    CREATE TRIGGER users_counted_delete AFTER DELETE ON users REFERENCING OLD TABLE AS removed_users
      FOR EACH STATEMENT EXECUTE FUNCTION realm_user_counts_remove();
    CREATE TRIGGER users_counted_update AFTER UPDATE ON users REFERENCING OLD TABLE AS removed_users NEW TABLE AS added_users
      FOR EACH STATEMENT EXECUTE FUNCTION realm_user_counts_change();
    INSERT INTO realm_user_counts (realm_id, people)
      SELECT realm_id, count(*) FROM users WHERE service_account_client_id IS NULL GROUP BY realm_id;
  `);
}
