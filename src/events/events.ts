// Login events (Keycloak's EventType names), stored per realm when the realm has events on.
// Written off the request path: a failed write is logged, never turned into a failed login.
import { newId } from '../crypto/random.ts';
import type { Logger } from '../observability/logger.ts';
import type { RealmContext } from '../realms/context.ts';
import type { Db } from '../store/db.ts';

export type LoginEvent = {
  type: string;
  clientId?: string | undefined;
  userId?: string | undefined;
  sessionId?: string | undefined;
  ipAddress?: string | undefined;
  error?: string | undefined;
  details?: Record<string, unknown>;
};

export function eventEnabled(realm: RealmContext, type: string): boolean {
  const { eventsEnabled, enabledEventTypes } = realm.settings;
  return eventsEnabled && (enabledEventTypes.length === 0 || enabledEventTypes.includes(type));
}

export function recordEvent(db: Db, realm: RealmContext, logger: Logger, event: LoginEvent): void {
  if (!eventEnabled(realm, event.type)) return;
  db.insertInto('events').values({
    id: newId(),
    realm_id: realm.id,
    type: event.type,
    client_id: event.clientId ?? null,
    user_id: event.userId ?? null,
    session_id: event.sessionId ?? null,
    ip_address: event.ipAddress ?? null,
    error: event.error ?? null,
    details: JSON.stringify(event.details ?? {}),
  }).execute().catch((err) => logger.warn({ err, type: event.type, realm: realm.name }, 'could not store event'));
}
