// Config maps of identity providers and components keep their secret values (client secrets,
// LDAP bind credentials...) sealed in a separate column, never in the readable jsonb. The Admin
// API shows them masked, as Keycloak does; a PUT that sends the mask back keeps the stored value.
import type { SecretBox } from '../crypto/secret-box.ts';

/** What Keycloak shows instead of a secret (ComponentRepresentation.SECRET_VALUE). */
export const SECRET_MASK = '**********';

/** Identity provider config keys that hold secrets. */
export const IDENTITY_PROVIDER_SECRET_KEYS = new Set(['clientSecret', 'clientAssertionSigningKey', 'finesseAdminPassword']);
/** Component config keys that hold secrets (Keycloak marks them `secret: true` in the provider's properties). */
export const COMPONENT_SECRET_KEYS = new Set(['bindCredential', 'privateKey', 'secret', 'password', 'keystorePassword', 'keyPassword']);

/** Splits a config map into its readable part and the sealed JSON of its secret part (null: none). */
export function sealSecrets<V>(box: SecretBox, config: Record<string, V>, secretKeys: Set<string>, previous?: Record<string, V>): { config: Record<string, V>; sealed: string | null } {
  const plain: Record<string, V> = {};
  const secrets: Record<string, V> = {};
  for (const [key, value] of Object.entries(config)) {
    if (!secretKeys.has(key)) {
      plain[key] = value;
      continue;
    }
    const masked = value === SECRET_MASK || (Array.isArray(value) && value.length === 1 && value[0] === SECRET_MASK);
    if (masked) {
      if (previous && key in previous) secrets[key] = previous[key]!;
    } else {
      secrets[key] = value;
    }
  }
  return { config: plain, sealed: Object.keys(secrets).length > 0 ? box.seal(JSON.stringify(secrets)) : null };
}

/** The secret part of a config, opened. */
export function openSecrets<V>(box: SecretBox, sealed: string | null): Record<string, V> {
  return sealed ? (JSON.parse(box.open(sealed)) as Record<string, V>) : {};
}

/** The full config: readable values plus secrets, either opened or masked. */
export function withSecrets<V>(box: SecretBox, config: Record<string, V>, sealed: string | null, mode: 'open' | 'masked'): Record<string, V> {
  const secrets = openSecrets<V>(box, sealed);
  const out: Record<string, V> = { ...config };
  for (const [key, value] of Object.entries(secrets)) {
    out[key] = mode === 'open' ? value : (Array.isArray(value) ? [SECRET_MASK] : SECRET_MASK) as V;
  }
  return out;
}
