// Login authenticators (CXone's named password/lockout/MFA policies), their assignment to users
// and groups, single-use action tokens (password reset and e-mailed required actions, stored as
// HMAC digests), and the TOTP time steps already used (codes are not replayable in their window).
import type { Kysely } from 'kysely';

import { executeScript } from './script.ts';

export async function up(db: Kysely<unknown>): Promise<void> {
  await executeScript(db, `
    CREATE TABLE login_authenticators (
      id uuid PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      name text NOT NULL,
      description text,
      is_default boolean NOT NULL DEFAULT false,
      config jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX login_authenticators_name ON login_authenticators (realm_id, lower(name));
    CREATE UNIQUE INDEX login_authenticators_one_default ON login_authenticators (realm_id) WHERE is_default;

    ALTER TABLE users ADD COLUMN login_authenticator_id uuid REFERENCES login_authenticators(id) ON DELETE SET NULL;
    ALTER TABLE groups ADD COLUMN login_authenticator_id uuid REFERENCES login_authenticators(id) ON DELETE SET NULL;
    CREATE INDEX users_login_authenticator ON users (login_authenticator_id) WHERE login_authenticator_id IS NOT NULL;
    CREATE INDEX groups_login_authenticator ON groups (login_authenticator_id) WHERE login_authenticator_id IS NOT NULL;

    CREATE TABLE action_tokens (
      digest text PRIMARY KEY,
      realm_id uuid NOT NULL REFERENCES realms(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      kind text NOT NULL,
      payload jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      used_at timestamptz
    );
    CREATE INDEX action_tokens_user ON action_tokens (user_id);
    CREATE INDEX action_tokens_expiry ON action_tokens (expires_at);

    CREATE TABLE otp_used_steps (
      credential_id uuid NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
      step bigint NOT NULL,
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (credential_id, step)
    );
    CREATE INDEX otp_used_steps_expiry ON otp_used_steps (expires_at);
  `);
}
