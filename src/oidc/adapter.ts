// node-oidc-provider storage adapter on the oidc_payloads table, scoped to one realm. Clients are
// not stored here: the 'Client' model reads the clients table through the realm's client cache.
import type { Adapter, AdapterPayload } from 'oidc-provider';

import { preparedStatement, runPrepared, type Db } from '../store/db.ts';

export type ClientLookup = (clientId: string) => Promise<AdapterPayload | undefined>;

const expiresAt = (expiresIn: number | undefined): Date | null => (expiresIn ? new Date(Date.now() + expiresIn * 1000) : null);

type PayloadRow = { payload: unknown; expires_at: Date | null; consumed_at: Date | null };

function live(row: PayloadRow | undefined): AdapterPayload | undefined {
  if (!row) return undefined;
  if (row.expires_at && row.expires_at.getTime() <= Date.now()) return undefined;
  const payload = row.payload as AdapterPayload;
  // oidc-provider learns a token was used from `consumed` in the payload.
  return row.consumed_at ? { ...payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) } : payload;
}

// Prepared on PostgreSQL (src/store/db.ts): a browser login runs about fifteen of these, and
// unnamed statements spent more of the database's CPU in parse and plan than in execution.
const UPSERT = preparedStatement('oidc-payload-upsert', `
  INSERT INTO oidc_payloads (realm_id, model, id, payload, grant_id, uid, user_code, expires_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
  ON CONFLICT (realm_id, model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
    uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at`);

const findBy = (column: 'id' | 'uid' | 'user_code') => preparedStatement(`oidc-payload-by-${column.replace('_', '-')}`, `
  SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE realm_id = $1 AND model = $2 AND ${column} = $3`);
const FIND_BY = { id: findBy('id'), uid: findBy('uid'), user_code: findBy('user_code') };

// Only the first consumer sets the time, so a replay keeps the original consumption.
const CONSUME = preparedStatement('oidc-payload-consume', `
  UPDATE oidc_payloads SET consumed_at = now() WHERE realm_id = $1 AND model = $2 AND id = $3 AND consumed_at IS NULL`);

const DESTROY = preparedStatement('oidc-payload-destroy', 'DELETE FROM oidc_payloads WHERE realm_id = $1 AND model = $2 AND id = $3');

export function createAdapterClass(db: Db, realmId: string, findClient: ClientLookup): new (model: string) => Adapter {
  return class PostgresAdapter implements Adapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed through the Admin API, not dynamic registration');
      await runPrepared(db, UPSERT, [
        realmId, this.model, id, JSON.stringify(payload),
        // A Grant row carries its own id, so revokeByGrantId removes the grant with its tokens.
        payload.grantId ?? (this.model === 'Grant' ? id : null),
        payload.uid ?? null, payload.userCode ?? null, expiresAt(expiresIn),
      ]);
    }

    /** One live row of this model by id, uid or user code. */
    async #findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
      const [row] = await runPrepared<PayloadRow>(db, FIND_BY[column], [realmId, this.model, value]);
      return live(row);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      return this.model === 'Client' ? findClient(id) : this.#findBy('id', id);
    }

    findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return this.#findBy('uid', uid);
    }

    findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return this.#findBy('user_code', userCode);
    }

    async consume(id: string): Promise<void> {
      await runPrepared(db, CONSUME, [realmId, this.model, id]);
    }

    async destroy(id: string): Promise<void> {
      await runPrepared(db, DESTROY, [realmId, this.model, id]);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      // Every model carrying the grant (codes, tokens, the grant itself) in one statement, and the
      // client sessions it started (a replayed code kills the refresh tokens of its first use).
      await db.deleteFrom('oidc_payloads').where('realm_id', '=', realmId).where('grant_id', '=', grantId).execute();
      await db.deleteFrom('client_sessions').where('realm_id', '=', realmId).where('grant_id', '=', grantId).execute();
    }
  };
}

/** Deletes expired rows; run periodically by the server under an advisory lock. */
export async function deleteExpiredPayloads(db: Db, now = new Date()): Promise<number> {
  const rows = await db.deleteFrom('oidc_payloads').where('expires_at', '<=', now).returning('id').execute();
  return rows.length;
}
