// Core schema (DESIGN section 4). Every realm-scoped table carries realm_id and cascades with
// its realm, so deleting a realm removes everything it owned in one statement.
import type { Kysely } from 'kysely';

import { executeScript } from './script.ts';

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    CREATE TABLE realms (
      id uuid PRIMARY KEY,
      name text NOT NULL UNIQUE,
      enabled boolean NOT NULL DEFAULT true,
      display_name text,
      -- Keycloak realm-level settings (lifespans, brute force, OTP policy, SMTP, themes...) by their
      -- RealmRepresentation names; defaults are filled in by the service, not the database.
      settings jsonb NOT NULL DEFAULT '{}',
      not_before integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE clients (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      client_id text NOT NULL,
      name text,
      description text,
      enabled boolean NOT NULL DEFAULT true,
      protocol text NOT NULL DEFAULT 'openid-connect',
      public_client boolean NOT NULL DEFAULT false,
      bearer_only boolean NOT NULL DEFAULT false,
      client_authenticator_type text NOT NULL DEFAULT 'client-secret',
      secret_sealed text,
      standard_flow_enabled boolean NOT NULL DEFAULT true,
      implicit_flow_enabled boolean NOT NULL DEFAULT false,
      direct_access_grants_enabled boolean NOT NULL DEFAULT false,
      service_accounts_enabled boolean NOT NULL DEFAULT false,
      consent_required boolean NOT NULL DEFAULT false,
      full_scope_allowed boolean NOT NULL DEFAULT true,
      frontchannel_logout boolean NOT NULL DEFAULT true,
      root_url text,
      base_url text,
      admin_url text,
      redirect_uris jsonb NOT NULL DEFAULT '[]',
      web_origins jsonb NOT NULL DEFAULT '[]',
      attributes jsonb NOT NULL DEFAULT '{}',
      -- ClientRepresentation fields we keep but do not interpret (round-trip on export).
      extra jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (realm_id, client_id)
    );

    CREATE TABLE users (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      username text NOT NULL,
      email text,
      email_verified boolean NOT NULL DEFAULT false,
      enabled boolean NOT NULL DEFAULT true,
      first_name text,
      last_name text,
      federation_link text,
      service_account_client_id uuid REFERENCES clients(id) ON DELETE CASCADE,
      application boolean NOT NULL DEFAULT false,
      attributes jsonb NOT NULL DEFAULT '{}',
      required_actions jsonb NOT NULL DEFAULT '[]',
      not_before integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    -- Keycloak stores usernames and e-mails lower-cased; we index the lower-cased form.
    CREATE UNIQUE INDEX users_realm_username ON users (realm_id, lower(username));
    CREATE INDEX users_realm_email ON users (realm_id, lower(email));
    CREATE UNIQUE INDEX users_service_account ON users (service_account_client_id) WHERE service_account_client_id IS NOT NULL;

    CREATE TABLE credentials (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      type text NOT NULL,
      user_label text,
      -- Keycloak's secretData: sealed with the master key when it holds a recoverable secret (OTP).
      secret_data text NOT NULL,
      credential_data jsonb NOT NULL DEFAULT '{}',
      priority integer NOT NULL DEFAULT 10,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX credentials_user ON credentials (user_id, type);

    CREATE TABLE roles (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      client_id uuid REFERENCES clients(id) ON DELETE CASCADE,
      name text NOT NULL,
      description text,
      attributes jsonb NOT NULL DEFAULT '{}',
      UNIQUE NULLS NOT DISTINCT (realm_id, client_id, name)
    );

    CREATE TABLE role_composites (
      parent_id uuid NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
      child_id uuid NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
      PRIMARY KEY (parent_id, child_id)
    );
    CREATE INDEX role_composites_child ON role_composites (child_id);

    CREATE TABLE groups (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      parent_id uuid REFERENCES groups(id) ON DELETE CASCADE,
      name text NOT NULL,
      description text,
      attributes jsonb NOT NULL DEFAULT '{}',
      UNIQUE NULLS NOT DISTINCT (realm_id, parent_id, name)
    );

    CREATE TABLE user_roles (
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      role_id uuid NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
      PRIMARY KEY (user_id, role_id)
    );
    CREATE INDEX user_roles_role ON user_roles (role_id);

    CREATE TABLE group_roles (
      group_id uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
      role_id uuid NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
      PRIMARY KEY (group_id, role_id)
    );

    CREATE TABLE user_groups (
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      group_id uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
      PRIMARY KEY (user_id, group_id)
    );
    CREATE INDEX user_groups_group ON user_groups (group_id);

    CREATE TABLE client_scopes (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      name text NOT NULL,
      description text,
      protocol text NOT NULL DEFAULT 'openid-connect',
      attributes jsonb NOT NULL DEFAULT '{}',
      UNIQUE (realm_id, name)
    );

    -- Realm-level defaults given to new clients (defaultDefaultClientScopes / defaultOptionalClientScopes).
    CREATE TABLE realm_default_client_scopes (
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      client_scope_id uuid NOT NULL REFERENCES client_scopes(id) ON DELETE CASCADE,
      default_scope boolean NOT NULL,
      PRIMARY KEY (realm_id, client_scope_id)
    );

    CREATE TABLE client_client_scopes (
      client_id uuid NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
      client_scope_id uuid NOT NULL REFERENCES client_scopes(id) ON DELETE CASCADE,
      default_scope boolean NOT NULL,
      PRIMARY KEY (client_id, client_scope_id)
    );

    -- Owned by exactly one client or one client scope.
    CREATE TABLE protocol_mappers (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      client_id uuid REFERENCES clients(id) ON DELETE CASCADE,
      client_scope_id uuid REFERENCES client_scopes(id) ON DELETE CASCADE,
      name text NOT NULL,
      protocol text NOT NULL DEFAULT 'openid-connect',
      protocol_mapper text NOT NULL,
      config jsonb NOT NULL DEFAULT '{}',
      CHECK ((client_id IS NULL) <> (client_scope_id IS NULL))
    );
    CREATE INDEX protocol_mappers_client ON protocol_mappers (client_id);
    CREATE INDEX protocol_mappers_scope ON protocol_mappers (client_scope_id);

    -- Role scope mappings of a client or client scope (what roles may appear in its tokens
    -- when fullScopeAllowed is off).
    CREATE TABLE scope_mappings (
      client_id uuid REFERENCES clients(id) ON DELETE CASCADE,
      client_scope_id uuid REFERENCES client_scopes(id) ON DELETE CASCADE,
      role_id uuid NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
      CHECK ((client_id IS NULL) <> (client_scope_id IS NULL)),
      UNIQUE NULLS NOT DISTINCT (client_id, client_scope_id, role_id)
    );

    CREATE TABLE signing_keys (
      kid text PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      alg text NOT NULL,
      public_jwk jsonb NOT NULL,
      private_jwk_sealed text NOT NULL,
      -- active: signs and is published; passive: published only, until retire_at.
      status text NOT NULL CHECK (status IN ('active', 'passive')),
      created_at timestamptz NOT NULL DEFAULT now(),
      retire_at timestamptz
    );
    CREATE INDEX signing_keys_realm ON signing_keys (realm_id, status);

    -- node-oidc-provider models (sessions, grants, codes, opaque tokens, interactions...).
    CREATE TABLE oidc_payloads (
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      model text NOT NULL,
      id text NOT NULL,
      payload jsonb NOT NULL,
      grant_id text,
      uid text,
      user_code text,
      expires_at timestamptz,
      consumed_at timestamptz,
      PRIMARY KEY (realm_id, model, id)
    );
    CREATE INDEX oidc_payloads_grant ON oidc_payloads (realm_id, grant_id) WHERE grant_id IS NOT NULL;
    CREATE INDEX oidc_payloads_uid ON oidc_payloads (realm_id, uid) WHERE uid IS NOT NULL;
    CREATE INDEX oidc_payloads_user_code ON oidc_payloads (realm_id, user_code) WHERE user_code IS NOT NULL;
    CREATE INDEX oidc_payloads_expires ON oidc_payloads (expires_at) WHERE expires_at IS NOT NULL;

    CREATE TABLE events (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      time timestamptz NOT NULL DEFAULT now(),
      type text NOT NULL,
      client_id text,
      user_id uuid,
      session_id text,
      ip_address text,
      error text,
      details jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_realm_time ON events (realm_id, time DESC);

    CREATE TABLE admin_events (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      time timestamptz NOT NULL DEFAULT now(),
      operation_type text NOT NULL,
      resource_type text NOT NULL,
      resource_path text NOT NULL,
      auth_realm_id uuid,
      auth_client_id text,
      auth_user_id uuid,
      ip_address text,
      representation jsonb,
      error text
    );
    CREATE INDEX admin_events_realm_time ON admin_events (realm_id, time DESC);
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    DROP TABLE admin_events, events, oidc_payloads, signing_keys, scope_mappings, protocol_mappers,
      client_client_scopes, realm_default_client_scopes, client_scopes, user_groups, group_roles,
      user_roles, groups, role_composites, roles, credentials, users, clients, realms;
  `);
}
