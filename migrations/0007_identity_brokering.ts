// Identity brokering (src/broker/): the state of a login in flight at an upstream provider, the
// SAML assertion ids already consumed (replay protection until they expire), and which upstream
// session a user session came from (logout propagation, SAML single logout by session index).
import type { Kysely } from 'kysely';

import { executeScript } from './script.ts';

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    -- One row per redirect to a provider: id is the OIDC state / SAML RelayState. protocol_sealed
    -- holds the PKCE verifier, nonce or AuthnRequest id; identity_sealed the validated identity
    -- between the provider's callback and the login page that finishes it.
    CREATE TABLE broker_requests (
      id text PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      identity_provider text NOT NULL,
      interaction_uid text,
      client_id text,
      protocol_sealed text,
      identity_sealed text,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      consumed_at timestamptz
    );
    CREATE INDEX broker_requests_expiry ON broker_requests (expires_at);

    CREATE TABLE saml_assertion_ids (
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      identity_provider text NOT NULL,
      assertion_id text NOT NULL,
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (realm_id, identity_provider, assertion_id)
    );
    CREATE INDEX saml_assertion_ids_expiry ON saml_assertion_ids (expires_at);

    -- The upstream side of a brokered user session (user_sessions.id).
    CREATE TABLE broker_sessions (
      session_id text NOT NULL,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      identity_provider text NOT NULL,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      external_user_id text NOT NULL,
      -- SAML: NameID, its format and the SessionIndex; OIDC: the upstream sid.
      external_session text,
      -- id_token (OIDC id_token_hint) or NameID details, sealed.
      data_sealed text,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (realm_id, session_id)
    );
    CREATE INDEX broker_sessions_external ON broker_sessions (realm_id, identity_provider, external_user_id)
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    DROP TABLE broker_sessions;
    DROP TABLE saml_assertion_ids;
    DROP TABLE broker_requests
  `);
}
