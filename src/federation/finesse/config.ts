// A `finesse` identity provider's typed configuration: the string map of Keycloak's
// IdentityProviderRepresentation.config (secrets opened) with Cloakroom's defaults applied.
// The Admin API validates these keys on write (src/admin/identity-providers.ts); reading stays
// lenient so a hand-edited or imported value falls back to the default instead of failing logins.
import type { SecretBox } from '../../crypto/secret-box.ts';
import type { RealmContext } from '../../realms/context.ts';
import type { Db } from '../../store/db.ts';
import { openSecrets } from '../../store/sealed-config.ts';
import type { IdentityProvider } from '../../store/schema.ts';

export const FINESSE_PROVIDER_ID = 'finesse';

export const DEFAULT_CONNECT_TIMEOUT_MS = 3000;
export const DEFAULT_READ_TIMEOUT_MS = 5000;
export const DEFAULT_AGENT_ROLE = 'agent';
export const DEFAULT_SUPERVISOR_ROLE = 'supervisor';
export const DEFAULT_TEAMS_GROUP_PATH = '/finesse-teams';

export type FinesseProviderConfig = {
  alias: string;
  internalId: string;
  realmId: string;
  enabled: boolean;
  /** Base URLs (https://host:8445), primary first. */
  urls: string[];
  /** PEM CA certificates replacing Node's default CAs; undefined: the default CAs. */
  caBundle?: string;
  tlsVerify: boolean;
  /** Milliseconds. */
  connectTimeout: number;
  /** Milliseconds, for the response headers and between body chunks. */
  readTimeout: number;
  /** Realm role name, or `clientId.role` for a client role. */
  agentRole: string;
  supervisorRole: string;
  /** Parent group of the team groups, `/a/b` form, no trailing slash. */
  teamsGroupPath: string;
  createUsers: boolean;
  adminUsername?: string;
  adminPassword?: string;
  /** Seconds between provisioning syncs; <= 0: no periodic sync. */
  syncPeriod: number;
  /** Client ids allowed to exchange Finesse tokens for this provider (empty: nobody). */
  tokenExchangeClients: string[];
  trustEmail: boolean;
};

type Config = Record<string, string | undefined>;

function str(config: Config, key: string): string | undefined {
  const value = config[key]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

/** Keycloak-style booleans: anything but "true"/"false" is the default. */
function bool(config: Config, key: string, fallback: boolean): boolean {
  const value = str(config, key)?.toLowerCase();
  return value === 'true' ? true : value === 'false' ? false : fallback;
}

function int(config: Config, key: string, fallback: number): number {
  const value = str(config, key);
  return value !== undefined && /^-?\d{1,9}$/.test(value) ? Number.parseInt(value, 10) : fallback;
}

/** A timeout in milliseconds: empty, zero, negative or unreadable means the default (never "forever"). */
function timeout(config: Config, key: string, fallback: number): number {
  const value = int(config, key, fallback);
  return value > 0 ? value : fallback;
}

/** A space- or comma-separated list (finesseUrls, tokenExchangeClients). */
export function splitList(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter((v) => v !== '');
}

/** `/a/b` form: one leading slash, no trailing or doubled slashes; the default when nothing is left. */
export function normalizeGroupPath(value: string | undefined): string {
  const segments = (value ?? '').split('/').map((s) => s.trim()).filter((s) => s !== '');
  return segments.length === 0 ? DEFAULT_TEAMS_GROUP_PATH : `/${segments.join('/')}`;
}

/** The typed config of a stored `finesse` identity provider (its secrets opened). */
export function finesseProviderConfig(row: IdentityProvider, box: SecretBox): FinesseProviderConfig {
  const config: Config = { ...(row.config as Record<string, string>), ...openSecrets<string>(box, row.secrets_sealed) };
  const caBundle = str(config, 'caBundle');
  const adminUsername = str(config, 'finesseAdminUsername');
  // Passwords are taken as typed (spaces may be part of them).
  const adminPassword = config.finesseAdminPassword === '' ? undefined : config.finesseAdminPassword;
  return {
    alias: row.alias,
    internalId: row.internal_id,
    realmId: row.realm_id,
    enabled: row.enabled,
    urls: splitList(config.finesseUrls),
    ...(caBundle !== undefined ? { caBundle } : {}),
    // Only an explicit "false" turns verification off.
    tlsVerify: str(config, 'tlsVerify')?.toLowerCase() !== 'false',
    connectTimeout: timeout(config, 'connectTimeout', DEFAULT_CONNECT_TIMEOUT_MS),
    readTimeout: timeout(config, 'readTimeout', DEFAULT_READ_TIMEOUT_MS),
    agentRole: str(config, 'agentRole') ?? DEFAULT_AGENT_ROLE,
    supervisorRole: str(config, 'supervisorRole') ?? DEFAULT_SUPERVISOR_ROLE,
    teamsGroupPath: normalizeGroupPath(config.teamsGroupPath),
    createUsers: bool(config, 'createUsers', true),
    ...(adminUsername !== undefined ? { adminUsername } : {}),
    ...(adminPassword !== undefined ? { adminPassword } : {}),
    syncPeriod: int(config, 'syncPeriod', -1),
    tokenExchangeClients: splitList(config.tokenExchangeClients),
    trustEmail: row.trust_email,
  };
}

/** A realm's `finesse` providers by alias (disabled ones too when asked). */
export async function loadFinesseProviders(db: Db, box: SecretBox, realmId: string, options: { includeDisabled?: boolean } = {}): Promise<FinesseProviderConfig[]> {
  let query = db.selectFrom('identity_providers').selectAll().where('realm_id', '=', realmId).where('provider_id', '=', FINESSE_PROVIDER_ID);
  if (!options.includeDisabled) query = query.where('enabled', '=', true);
  const rows = await query.orderBy('alias').execute();
  return rows.map((row) => finesseProviderConfig(row, box));
}

/** The realm's enabled `finesse` providers, loaded once per realm context (identity provider writes drop the context). */
export function realmFinesseProviders(realm: RealmContext): Promise<FinesseProviderConfig[]> {
  return realm.memo('finesse-providers', () => loadFinesseProviders(realm.db, realm.box, realm.realm.id));
}

/** One enabled `finesse` provider of the realm by alias (token exchange's subject_issuer). */
export async function realmFinesseProvider(realm: RealmContext, alias: string): Promise<FinesseProviderConfig | undefined> {
  return (await realmFinesseProviders(realm)).find((p) => p.alias === alias);
}
