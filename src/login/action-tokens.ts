// Single-use action tokens behind e-mailed links (password reset, admin-requested required actions,
// e-mail verification). The token is 32 random bytes that only the e-mail carries; the database
// keeps HMAC-SHA256(token) under a key derived from the master key, so a database leak yields no
// usable link. Lookup is by digest (nothing to compare in application code); use is one atomic
// UPDATE, so two concurrent submits of one link cannot both succeed.
import crypto from 'node:crypto';

import { sql, type Selectable } from 'kysely';

import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../store/db.ts';
import type { ActionTokenTable } from '../store/schema.ts';

export type ActionTokenKind = 'reset-credentials' | 'execute-actions' | 'verify-email';
export type ActionToken = Selectable<ActionTokenTable>;

/** base64url of 32 bytes. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Expired rows removed per new token: more than are created, so the table cannot grow without bound. */
const EXPIRED_BATCH = 50;

const digestKeys = new WeakMap<SecretBox, crypto.KeyObject>();

export function actionTokenDigest(box: SecretBox, token: string): string {
  let key = digestKeys.get(box);
  if (!key) {
    key = crypto.createSecretKey(box.derive('action-token'));
    digestKeys.set(box, key);
  }
  return crypto.createHmac('sha256', key).update(token, 'utf8').digest('base64url');
}

export type NewActionToken = {
  realmId: string;
  userId: string;
  kind: ActionTokenKind;
  payload: Record<string, unknown>;
  lifespanSeconds: number;
};

/** Stores a new token and returns it (the only time it exists in clear). */
export async function createActionToken(db: Db, box: SecretBox, token: NewActionToken): Promise<string> {
  const secret = crypto.randomBytes(32).toString('base64url');
  const lifespan = Math.max(1, Math.floor(token.lifespanSeconds));
  // Opportunistic cleanup instead of a job: each new token removes a bounded batch of expired ones.
  await db.deleteFrom('action_tokens').where('digest', 'in', (eb) => eb.selectFrom('action_tokens').select('digest')
    .where('expires_at', '<=', sql<Date>`now()`).limit(EXPIRED_BATCH)).execute();
  await db.insertInto('action_tokens').values({
    digest: actionTokenDigest(box, secret),
    realm_id: token.realmId,
    user_id: token.userId,
    kind: token.kind,
    payload: JSON.stringify(token.payload),
    expires_at: sql<Date>`now() + make_interval(secs => ${lifespan})`,
  }).execute();
  return secret;
}

/** The unexpired, unused token of `realmId`, or undefined (malformed, unknown, expired, used). */
export async function findActionToken(db: Db, box: SecretBox, realmId: string, token: unknown): Promise<ActionToken | undefined> {
  if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) return undefined;
  return db.selectFrom('action_tokens').selectAll()
    .where('digest', '=', actionTokenDigest(box, token))
    .where('realm_id', '=', realmId)
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst();
}

/** Marks the token used; false when it was already used or has expired meanwhile. */
export async function consumeActionToken(db: Db, digest: string): Promise<boolean> {
  const row = await db.updateTable('action_tokens').set({ used_at: sql<Date>`now()` })
    .where('digest', '=', digest).where('used_at', 'is', null).where('expires_at', '>', sql<Date>`now()`)
    .returning('digest').executeTakeFirst();
  return row !== undefined;
}

/** Records progress in an open token (e.g. the required actions done so far); false when no longer open. */
export async function updateActionTokenPayload(db: Db, digest: string, payload: Record<string, unknown>): Promise<boolean> {
  const row = await db.updateTable('action_tokens').set({ payload: JSON.stringify(payload) })
    .where('digest', '=', digest).where('used_at', 'is', null).where('expires_at', '>', sql<Date>`now()`)
    .returning('digest').executeTakeFirst();
  return row !== undefined;
}

/** Ends the user's other open tokens of `kind` (after a password reset, older reset links die). */
export async function invalidateActionTokens(db: Db, userId: string, kind: ActionTokenKind, exceptDigest?: string): Promise<number> {
  let query = db.updateTable('action_tokens').set({ used_at: sql<Date>`now()` })
    .where('user_id', '=', userId).where('kind', '=', kind).where('used_at', 'is', null);
  if (exceptDigest !== undefined) query = query.where('digest', '!=', exceptDigest);
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Deletes expired tokens everywhere (for the periodic cleanup job); returns how many. */
export async function deleteExpiredActionTokens(db: Db): Promise<number> {
  const result = await db.deleteFrom('action_tokens').where('expires_at', '<=', sql<Date>`now()`).executeTakeFirst();
  return Number(result.numDeletedRows);
}
