// User sessions (Keycloak's user and offline sessions) and client sessions (one per client that
// holds tokens of a session, with the refresh-token rotation state). A browser session's id is
// oidc-provider's session uid, so `sid` is the same for every client of one SSO session.
import type { Kysely } from 'kysely';

import { executeScript } from './script.ts';

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    CREATE TABLE user_sessions (
      id text NOT NULL,
      -- An offline session shares the id of the session it came from and outlives it.
      offline boolean NOT NULL DEFAULT false,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      login_username text NOT NULL,
      ip_address text,
      remember_me boolean NOT NULL DEFAULT false,
      auth_time integer NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now(),
      last_refresh_at timestamptz NOT NULL DEFAULT now(),
      -- min(last refresh + idle timeout, start + max lifespan), recomputed on every refresh.
      expires_at timestamptz,
      PRIMARY KEY (id, offline)
    );
    CREATE INDEX user_sessions_user ON user_sessions (user_id);
    CREATE INDEX user_sessions_expiry ON user_sessions (expires_at);

    CREATE TABLE client_sessions (
      user_session_id text NOT NULL,
      offline boolean NOT NULL,
      client_id uuid NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      -- oidc-provider Grant of a browser login (revoked with the session).
      grant_id text,
      scope text NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now(),
      last_refresh_at timestamptz NOT NULL DEFAULT now(),
      -- Rotation (revokeRefreshToken): the token in use and its use count, the newest issued one,
      -- and the last rotation (for the reuse grace window).
      current_refresh_jti text,
      refresh_use_count integer NOT NULL DEFAULT 0,
      latest_refresh_jti text,
      rotated_from_jti text,
      rotated_at timestamptz,
      successor_sealed text,
      PRIMARY KEY (user_session_id, offline, client_id),
      FOREIGN KEY (user_session_id, offline) REFERENCES user_sessions (id, offline) ON DELETE CASCADE
    );
    CREATE INDEX client_sessions_client ON client_sessions (client_id);
    CREATE INDEX client_sessions_grant ON client_sessions (grant_id) WHERE grant_id IS NOT NULL
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    DROP TABLE client_sessions;
    DROP TABLE user_sessions
  `);
}
