// What a grant handler needs of a token request, whoever authenticated the client: oidc-provider
// (grants registered with registerGrantType) or Cloakroom's hot path (src/oidc/token-endpoint.ts).
import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import type { ClientModel, RealmContext } from '../../realms/context.ts';

/** An authenticated client's token request. */
export type GrantRequest = {
  client: ClientModel;
  issuer: string;
  ipAddress: string;
  /** The grant's parameters; empty values are absent, as oidc-provider passes them. */
  params: Record<string, string | undefined>;
};

/** The grant request of a token request oidc-provider authenticated. */
export async function grantRequestOf(realm: RealmContext, ctx: KoaContextWithOIDC): Promise<GrantRequest> {
  const client = await realm.client(ctx.oidc.client!.clientId);
  if (!client) throw new errors.InvalidClient('client not found');
  return { client, issuer: ctx.oidc.issuer, ipAddress: ctx.ip, params: ctx.oidc.params as Record<string, string | undefined> };
}

