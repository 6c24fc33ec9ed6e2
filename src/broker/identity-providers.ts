// The realm's identity providers as the broker uses them: enabled state, config with secrets
// opened, and their mappers. Loaded once per realm context (an Admin API change rebuilds it).
import type { RealmContext } from '../realms/context.ts';
import { openSecrets } from '../store/sealed-config.ts';
import type { IdentityProviderModel } from './types.ts';

export type IdentityProviderMapperModel = { id: string; name: string; type: string; config: Record<string, string> };
export type BrokerProvider = IdentityProviderModel & { mappers: IdentityProviderMapperModel[] };

/** Provider ids that log users in by sending the browser to the provider (Finesse checks passwords instead). */
export const BROKER_PROTOCOLS: Record<string, 'oauth' | 'saml'> = {
  oidc: 'oauth', 'keycloak-oidc': 'oauth', oauth2: 'oauth', github: 'oauth', google: 'oauth', microsoft: 'oauth', facebook: 'oauth', saml: 'saml',
};

export function brokerProviders(realm: RealmContext): Promise<BrokerProvider[]> {
  return realm.memo('broker-providers', async () => {
    const rows = await realm.db.selectFrom('identity_providers').selectAll().where('realm_id', '=', realm.id).orderBy('alias').execute();
    const mappers = rows.length === 0 ? [] : await realm.db.selectFrom('identity_provider_mappers').selectAll().where('realm_id', '=', realm.id).orderBy('name').execute();
    return rows.filter((row) => BROKER_PROTOCOLS[row.provider_id] !== undefined).map((row) => ({
      row, alias: row.alias, providerId: row.provider_id,
      config: { ...(row.config as Record<string, string>), ...openSecrets<string>(realm.box, row.secrets_sealed) },
      mappers: mappers.filter((m) => m.identity_provider_id === row.internal_id)
        .map((m) => ({ id: m.id, name: m.name, type: m.mapper_type, config: m.config as Record<string, string> })),
    }));
  });
}

/** An enabled broker provider by alias. */
export async function enabledBrokerProvider(realm: RealmContext, alias: string): Promise<BrokerProvider | undefined> {
  return (await brokerProviders(realm)).find((p) => p.alias === alias && p.row.enabled);
}

/** Buttons on the login page: enabled providers not hidden from it, in Keycloak's guiOrder then alias order. */
export async function loginPageProviders(realm: RealmContext): Promise<BrokerProvider[]> {
  const shown = (await brokerProviders(realm)).filter((p) => p.row.enabled && !p.row.hide_on_login && !p.row.link_only);
  const order = (p: BrokerProvider): number => {
    const n = Number(p.config.guiOrder);
    return Number.isFinite(n) && p.config.guiOrder !== '' && p.config.guiOrder !== undefined ? n : Number.MAX_SAFE_INTEGER;
  };
  return shown.sort((a, b) => order(a) - order(b) || a.alias.localeCompare(b.alias));
}

/** Keycloak's syncMode: IMPORT (mappers only when the user is created), FORCE, LEGACY. */
export function syncMode(provider: BrokerProvider): 'IMPORT' | 'FORCE' | 'LEGACY' {
  const mode = provider.config.syncMode;
  return mode === 'FORCE' || mode === 'LEGACY' ? mode : 'IMPORT';
}
