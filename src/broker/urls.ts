// Where the broker's endpoints are (Keycloak's layout under the realm issuer).
import type { BrokerUrls } from './types.ts';

export function brokerUrls(issuer: string, alias: string): BrokerUrls {
  const endpoint = `${issuer}/broker/${encodeURIComponent(alias)}/endpoint`;
  return { endpoint, descriptor: `${endpoint}/descriptor`, issuer };
}

/** Where the login page's button for a provider points (relative to the server). */
export function brokerLoginUrl(issuer: string, alias: string, interactionUid: string): string {
  return `${new URL(issuer).pathname}/broker/${encodeURIComponent(alias)}/login?session_code=${encodeURIComponent(interactionUid)}`;
}
