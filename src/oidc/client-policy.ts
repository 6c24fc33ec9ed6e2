// Per-client token policy from Keycloak client settings: access token lifespan and the origins a
// browser client may call from (CORS, allowed-origins).
import type { ClientModel, RealmContext } from '../realms/context.ts';

/** Client attribute `access.token.lifespan` overrides the realm's accessTokenLifespan. */
export function accessTokenLifespan(realm: RealmContext, client: ClientModel | undefined): number {
  const override = Number.parseInt(client?.row.attributes['access.token.lifespan'] ?? '', 10);
  return Number.isFinite(override) && override > 0 ? override : realm.settings.accessTokenLifespan;
}

/** Origins allowed for CORS: webOrigins, with '+' meaning the origins of the redirect URIs. */
export function clientAllowsOrigin(client: ClientModel, origin: string): boolean {
  for (const entry of client.row.web_origins) {
    if (entry === '*' || entry === origin) return true;
    if (entry === '+') {
      for (const uri of client.row.redirect_uris) {
        try {
          if (new URL(uri.replace(/\*$/, '')).origin === origin) return true;
        } catch { /* relative or malformed redirect URI */ }
      }
    }
  }
  return false;
}

/**
 * Keycloak's redirect URI rule: exact match, except that a registered URI ending in '*' matches
 * any URI starting with what precedes the '*'.
 */
export function redirectUriMatches(registered: string[], value: string): boolean {
  for (const uri of registered) {
    if (uri === value) return true;
    if (uri.endsWith('*') && value.startsWith(uri.slice(0, -1))) return true;
  }
  return false;
}
