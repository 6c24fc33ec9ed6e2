// node-oidc-provider storage adapter on the oidc_payloads table, scoped to one realm. Clients are
// not stored here: the 'Client' model reads the clients table through the realm's client cache.
import type { Adapter, AdapterPayload } from 'oidc-provider';

import type { Db } from '../store/db.ts';

export type ClientLookup = (clientId: string) => Promise<AdapterPayload | undefined>;

const expiresAt = (expiresIn: number | undefined): Date | null => (expiresIn ? new Date(Date.now() + expiresIn * 1000) : null);

function live(row: { payload: unknown; expires_at: Date | null; consumed_at: Date | null } | undefined): AdapterPayload | undefined {
  if (!row) return undefined;
  if (row.expires_at && row.expires_at.getTime() <= Date.now()) return undefined;
  const payload = row.payload as AdapterPayload;
  // oidc-provider learns a token was used from `consumed` in the payload.
  return row.consumed_at ? { ...payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) } : payload;
}

export function createAdapterClass(db: Db, realmId: string, findClient: ClientLookup): new (model: string) => Adapter {
  return class PostgresAdapter implements Adapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed through the Admin API, not dynamic registration');
      const row = {
        realm_id: realmId,
        model: this.model,
        id,
        payload: JSON.stringify(payload),
        // A Grant row carries its own id, so revokeByGrantId removes the grant with its tokens.
        grant_id: payload.grantId ?? (this.model === 'Grant' ? id : null),
        uid: payload.uid ?? null,
        user_code: payload.userCode ?? null,
        expires_at: expiresAt(expiresIn),
      };
      await db.insertInto('oidc_payloads').values(row)
        .onConflict((oc) => oc.columns(['realm_id', 'model', 'id']).doUpdateSet({
          payload: row.payload, grant_id: row.grant_id, uid: row.uid, user_code: row.user_code, expires_at: row.expires_at,
        }))
        .execute();
    }

    /** One live row of this model by id, uid or user code. */
    async #findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
      const row = await db.selectFrom('oidc_payloads').select(['payload', 'expires_at', 'consumed_at'])
        .where('realm_id', '=', realmId).where('model', '=', this.model).where(column, '=', value)
        .executeTakeFirst();
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
      // Only the first consumer sets the time, so a replay keeps the original consumption.
      await db.updateTable('oidc_payloads').set({ consumed_at: new Date() })
        .where('realm_id', '=', realmId).where('model', '=', this.model).where('id', '=', id)
        .where('consumed_at', 'is', null)
        .execute();
    }

    async destroy(id: string): Promise<void> {
      await db.deleteFrom('oidc_payloads')
        .where('realm_id', '=', realmId).where('model', '=', this.model).where('id', '=', id)
        .execute();
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
