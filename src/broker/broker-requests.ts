// A login in flight at an upstream provider, kept in Postgres so any instance can take the
// provider's callback. The row's id is the OIDC `state` / SAML RelayState; the interaction uid
// binds it to the browser's login (the login page that finishes it needs that interaction's
// cookie). Both what we sent (PKCE verifier, nonce, AuthnRequest id) and the identity the provider
// vouched for are sealed: a database reader learns no verifier and no personal data.
import crypto from 'node:crypto';

import { sql } from 'kysely';

import type { RealmContext } from '../realms/context.ts';
import type { Db } from '../store/db.ts';
import type { BrokeredIdentity } from './types.ts';

/** How long the user may take at the provider (Keycloak's login timeout is 30 minutes). */
export const BROKER_REQUEST_SECONDS = 30 * 60;
/** How long a validated identity waits for the login page to pick it up. */
const HANDOFF_SECONDS = 5 * 60;

export type BrokerRequest = {
  id: string;
  alias: string;
  /** The login (oidc-provider interaction) that sent the browser out; null for IdP-initiated SAML. */
  interactionUid: string | null;
  /** IdP-initiated SAML: the client the login lands in. */
  clientId: string | null;
  protocol: Record<string, string>;
  identity: BrokeredIdentity | undefined;
};

const STATE_FORMAT = /^[A-Za-z0-9_-]{20,64}$/;

/** A fresh request id (the OIDC state / SAML RelayState sent to the provider). */
export const newBrokerRequestId = (): string => crypto.randomBytes(24).toString('base64url');

export async function createBrokerRequest(realm: RealmContext, request: { id?: string; alias: string; interactionUid: string | null; clientId?: string | null; protocol?: Record<string, string>; identity?: BrokeredIdentity }): Promise<string> {
  const id = request.id ?? newBrokerRequestId();
  const seconds = request.identity ? HANDOFF_SECONDS : BROKER_REQUEST_SECONDS;
  await realm.db.insertInto('broker_requests').values({
    id, realm_id: realm.id, identity_provider: request.alias, interaction_uid: request.interactionUid, client_id: request.clientId ?? null,
    protocol_sealed: request.protocol ? realm.box.seal(JSON.stringify(request.protocol)) : null,
    identity_sealed: request.identity ? realm.box.seal(JSON.stringify(request.identity)) : null,
    expires_at: new Date(Date.now() + seconds * 1000),
  }).execute();
  return id;
}

/** An unexpired, unconsumed request of this realm (and of this provider, when given). */
export async function findBrokerRequest(realm: RealmContext, alias: string | undefined, id: string): Promise<BrokerRequest | undefined> {
  if (!STATE_FORMAT.test(id)) return undefined;
  let query = realm.db.selectFrom('broker_requests').selectAll()
    .where('id', '=', id).where('realm_id', '=', realm.id)
    .where('consumed_at', 'is', null).where('expires_at', '>', new Date());
  if (alias !== undefined) query = query.where('identity_provider', '=', alias);
  const row = await query.executeTakeFirst();
  if (!row) return undefined;
  return {
    id: row.id, alias: row.identity_provider, interactionUid: row.interaction_uid, clientId: row.client_id,
    protocol: row.protocol_sealed ? JSON.parse(realm.box.open(row.protocol_sealed)) as Record<string, string> : {},
    identity: row.identity_sealed ? JSON.parse(realm.box.open(row.identity_sealed)) as BrokeredIdentity : undefined,
  };
}

/** Marks a request used; false when another request (a replayed callback) got there first. */
export async function consumeBrokerRequest(realm: RealmContext, id: string): Promise<boolean> {
  const result = await realm.db.updateTable('broker_requests').set({ consumed_at: new Date() })
    .where('id', '=', id).where('realm_id', '=', realm.id).where('consumed_at', 'is', null).executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** A consumed request becomes a handoff: the validated identity for the login page, under a new id. */
export async function handOff(realm: RealmContext, request: BrokerRequest, identity: BrokeredIdentity): Promise<string> {
  return createBrokerRequest(realm, { alias: request.alias, interactionUid: request.interactionUid, clientId: request.clientId, identity });
}

/** SAML replay protection: true when the assertion id is new (and now remembered until it expires). */
export async function rememberSamlAssertion(realm: RealmContext, alias: string, assertionId: string, notOnOrAfter: Date): Promise<boolean> {
  // Kept at least a day: an assertion without an end must not become replayable soon after.
  const keepUntil = new Date(Math.max(notOnOrAfter.getTime(), Date.now() + 24 * 3600 * 1000));
  const result = await realm.db.insertInto('saml_assertion_ids')
    .values({ realm_id: realm.id, identity_provider: alias, assertion_id: assertionId.slice(0, 256), expires_at: keepUntil })
    .onConflict((oc) => oc.doNothing()).executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
}

/** Drops expired requests and assertion ids, and what is kept of ended sessions (server housekeeping). */
export async function deleteExpiredBrokerState(db: Db): Promise<number> {
  const requests = await db.deleteFrom('broker_requests').where('expires_at', '<', sql<Date>`now()`).executeTakeFirst();
  const assertions = await db.deleteFrom('saml_assertion_ids').where('expires_at', '<', sql<Date>`now()`).executeTakeFirst();
  // Upstream sessions of user sessions that ended (expired, logged out by an admin...).
  const sessions = await db.deleteFrom('broker_sessions')
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('user_sessions').select('user_sessions.id')
      .whereRef('user_sessions.realm_id', '=', 'broker_sessions.realm_id').whereRef('user_sessions.id', '=', 'broker_sessions.session_id'))))
    .executeTakeFirst();
  return Number(requests.numDeletedRows) + Number(assertions.numDeletedRows) + Number(sessions.numDeletedRows);
}
