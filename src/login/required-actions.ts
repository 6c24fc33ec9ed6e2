// The realm's registered required actions (Keycloak's RequiredActionProviderModel list): which
// actions exist, whether they are enabled, which new users get by default, and their order. Stored
// in the realm settings under `requiredActions`, the field Keycloak's realm export uses; a realm
// that never changed them has Keycloak 26's defaults for a new realm.

export type RequiredActionProvider = {
  alias: string;
  name: string;
  providerId: string;
  enabled: boolean;
  defaultAction: boolean;
  priority: number;
  config: Record<string, string>;
};

/** The actions Cloakroom's login pages implement. */
export const SUPPORTED_REQUIRED_ACTIONS = ['TERMS_AND_CONDITIONS', 'UPDATE_PASSWORD', 'CONFIGURE_TOTP', 'VERIFY_EMAIL', 'UPDATE_PROFILE'] as const;

const action = (alias: string, name: string, priority: number, enabled = true): RequiredActionProvider => ({
  alias, name, providerId: alias, enabled, defaultAction: false, priority, config: {},
});

/** What Keycloak 26 registers in a new realm (a fresh 26.4.5 realm export: names, order, priorities, disabled ones). */
export const DEFAULT_REQUIRED_ACTIONS: readonly RequiredActionProvider[] = Object.freeze([
  action('CONFIGURE_TOTP', 'Configure OTP', 10),
  action('TERMS_AND_CONDITIONS', 'Terms and Conditions', 20, false),
  action('UPDATE_PASSWORD', 'Update Password', 30),
  action('UPDATE_PROFILE', 'Update Profile', 40),
  action('VERIFY_EMAIL', 'Verify Email', 50),
  action('delete_account', 'Delete Account', 60, false),
  action('UPDATE_EMAIL', 'Update Email', 70, false),
  action('webauthn-register', 'Webauthn Register', 80),
  action('webauthn-register-passwordless', 'Webauthn Register Passwordless', 90),
  action('VERIFY_PROFILE', 'Verify Profile', 100),
  action('delete_credential', 'Delete Credential', 110),
  action('idp_link', 'Linking Identity Provider', 120),
  action('CONFIGURE_RECOVERY_AUTHN_CODES', 'Recovery Authentication Codes', 130),
  action('update_user_locale', 'Update User Locale', 1000),
]);

/**
 * Required action providers a realm may register (Keycloak 26's built-in factories, all of them
 * in a new realm): unregistered-required-actions lists those a realm has removed.
 */
export const KNOWN_REQUIRED_ACTIONS: ReadonlyArray<{ providerId: string; name: string }> = Object.freeze(
  DEFAULT_REQUIRED_ACTIONS.map((a) => ({ providerId: a.providerId, name: a.name })),
);

/** Keycloak's RequiredActionComparator: priority, then name. */
export const byPriority = (a: RequiredActionProvider, b: RequiredActionProvider): number =>
  a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

export class RequiredActionsError extends Error {}

/** Keycloak renamed terms_and_conditions to TERMS_AND_CONDITIONS (22.0): old exports still carry it. */
const renamed = (alias: string): string => (alias === 'terms_and_conditions' ? 'TERMS_AND_CONDITIONS' : alias);

/** One RequiredActionProviderRepresentation; undefined (lenient) or an error (strict) when unusable. */
function readProvider(input: unknown, strict: boolean, index: number): RequiredActionProvider | undefined {
  const fail = (why: string): undefined => {
    if (strict) throw new RequiredActionsError(`requiredActions[${index}]: ${why}`);
    return undefined;
  };
  if (!isObject(input)) return fail('must be an object');
  const rawAlias = input.alias ?? input.providerId;
  if (typeof rawAlias !== 'string' || rawAlias.trim() === '' || rawAlias.length > 255) return fail('alias must be a non-empty string');
  const alias = renamed(rawAlias);
  const providerId = typeof input.providerId === 'string' && input.providerId !== '' ? renamed(input.providerId) : alias;
  const known = DEFAULT_REQUIRED_ACTIONS.find((a) => a.alias === alias);
  if (input.priority !== undefined && input.priority !== null && !Number.isInteger(input.priority)) return fail('priority must be an integer');
  for (const key of ['enabled', 'defaultAction'] as const) {
    if (input[key] !== undefined && input[key] !== null && typeof input[key] !== 'boolean') return fail(`${key} must be a boolean`);
  }
  const config: Record<string, string> = {};
  if (input.config !== undefined && input.config !== null) {
    if (!isObject(input.config)) return fail('config must be an object');
    for (const [key, value] of Object.entries(input.config)) {
      if (value === null || value === undefined) continue;
      if (typeof value === 'object') return fail(`config.${key} must be a string`);
      config[key] = String(value);
    }
  }
  return {
    alias,
    name: typeof input.name === 'string' ? input.name : known?.name ?? alias,
    providerId,
    enabled: typeof input.enabled === 'boolean' ? input.enabled : false,
    defaultAction: typeof input.defaultAction === 'boolean' ? input.defaultAction : false,
    priority: typeof input.priority === 'number' ? input.priority : 0,
    config,
  };
}

/**
 * A realm representation's `requiredActions` as Keycloak's import keeps them: the listed ones,
 * then every default the list lacks (DefaultRequiredActions.addActions after the import).
 * Throws RequiredActionsError for an entry that cannot be read.
 */
export function importedRequiredActions(input: unknown): RequiredActionProvider[] {
  if (!Array.isArray(input)) throw new RequiredActionsError('requiredActions must be a list');
  const list: RequiredActionProvider[] = [];
  input.forEach((entry, index) => {
    const provider = readProvider(entry, true, index)!;
    if (list.some((p) => p.alias === provider.alias)) throw new RequiredActionsError(`requiredActions[${index}]: alias ${provider.alias} is listed twice`);
    list.push(provider);
  });
  for (const fallback of DEFAULT_REQUIRED_ACTIONS) if (!list.some((p) => p.alias === fallback.alias)) list.push({ ...fallback, config: {} });
  return list;
}

/** The realm's required action providers in Keycloak's order; Keycloak 26's defaults when none are stored. */
export function requiredActionProviders(realmSettings: Record<string, unknown>): RequiredActionProvider[] {
  const stored = realmSettings.requiredActions;
  const list = Array.isArray(stored)
    ? stored.flatMap((entry, index) => readProvider(entry, false, index) ?? [])
    : DEFAULT_REQUIRED_ACTIONS.map((a) => ({ ...a, config: {} }));
  return list.sort(byPriority);
}

/** Aliases of the enabled required actions, in the order they run. */
export function enabledActionsInOrder(realmSettings: Record<string, unknown>): string[] {
  return requiredActionProviders(realmSettings).filter((a) => a.enabled).map((a) => a.alias);
}

/** What Keycloak's addUser gives a new user (admin or registration): the enabled default actions. */
export function defaultActionsForNewUser(realmSettings: Record<string, unknown>): string[] {
  return requiredActionProviders(realmSettings).filter((a) => a.enabled && a.defaultAction).map((a) => a.alias);
}

// --- configuration (Keycloak 26.3+: every built-in action but delete_account takes max_auth_age) ---

/** Keycloak's KC_ACTION_MAX_AGE: how old (seconds) a login may be for an application-initiated action. */
export const DEFAULT_MAX_AUTH_AGE = 300;

export const MAX_AUTH_AGE = 'max_auth_age';

/** Keycloak's MAX_AUTH_AGE_CONFIG_PROPERTIES, as config-description lists them (ConfigPropertyRepresentation). */
export const REQUIRED_ACTION_CONFIG_PROPERTIES = Object.freeze([{
  name: MAX_AUTH_AGE,
  label: 'Maximum Age of Authentication',
  helpText: 'Configures the duration in seconds this action can be used after the last authentication before the user is required to re-authenticate. '
    + 'This parameter is used just in the context of AIA when the kc_action parameter is available in the request, which is for instance when user himself updates his password in the account console.',
  type: 'String',
  defaultValue: String(DEFAULT_MAX_AUTH_AGE),
  options: [],
  secret: false,
  readOnly: false,
  required: false,
}]);

/** delete_account always asks for a fresh login (its max auth age is 0) and takes no configuration. */
export const isConfigurableRequiredAction = (providerId: string): boolean => providerId !== 'delete_account';

/**
 * Why a max_auth_age value cannot be stored (Keycloak's validateConfig: a whole number, at least
 * 0), as its error message key; undefined when it can. An absent or empty value is fine.
 */
export function maxAuthAgeError(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^-?\d{1,10}$/.test(value.trim())) return 'error-invalid-value';
  return Number(value) < 0 ? 'error-number-out-of-range-too-small' : undefined;
}

/** The action's configured max_auth_age in seconds, or undefined when none (or an unusable one) is set. */
export function configuredMaxAuthAge(provider: RequiredActionProvider): number | undefined {
  const value = provider.config[MAX_AUTH_AGE];
  if (value === undefined || value === '' || maxAuthAgeError(value) !== undefined) return undefined;
  return Number(value);
}
